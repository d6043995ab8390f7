"""What a round reports: clicks, label quality, time and memory (no torch: cheap to import).

``metrics.json`` of every round holds one; campaign tracking and the charts read them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RoundResult:
    round: int
    clicks: int
    clicks_total: int
    samples: int
    labelled_fraction: float
    miou: float | None
    per_class: dict[str, float | None]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    guided_radius: int | None = None  # the fusion's guided radius this round (calibrate.py)
    network_weight: float | None = None  # the network's vote weight this round (calibrate.py)
    miou_estimate: float | None = None  # the labels' mIoU estimated without truth (engine.py)
    miou_estimate_from: str | None = None  # "leave-one-out" (labelled frames hidden) | "belief"
    # [low, high] of the estimate at fusion.estimate_level (leave-one-out only: engine.py)
    miou_interval: list[float] | None = None
    # each class's estimated IoU (``hvsa.method.estimate``; leave-one-out only)
    per_class_estimate: dict[str, float | None] | None = None
    # each frame's estimated share of pixels labelled right (``method.estimate.frame_accuracy``)
    frame_estimates: list[float | None] | None = None
