"""The rules every driver shares: which settings go together, and when rounds stop.

Every driver (``hvsa run``, ``hvsa benchmark``, ``hvsa campaign init`` and each DVC stage)
calls :func:`check_settings` before any work, so a combination that could never be sent or used
is refused once, with the same line, wherever it is set; and :func:`stop_reason` after each
round, so a video stops for the same reason in a run and in a campaign.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hvsa.config import Config
from hvsa.data.scaling import spread_frames
from hvsa.data.video import ClassList, Video, reads_lazily
from hvsa.errors import HvsaError
from hvsa.method.auto import LAYERS
from hvsa.method.network import write_fresh_network
from hvsa.method.samples import parse_granularity


def is_auto(cfg: Config) -> bool:
    return cfg.samples.granularity == "auto"


def wants_layers(cfg: Config) -> bool:
    """Whether rounds may ask for class layers (``layers.enabled``, or ``layers`` in auto)."""
    return cfg.layers.enabled or (is_auto(cfg) and LAYERS in cfg.auto.granularities)


def sample_set_names(cfg: Config) -> list[str]:
    """The sample sets a run needs, by name (``frame``, ``rectN``, ``superpixel``): the
    granularity's, or every kind ``auto`` may offer but class layers (they need no set)."""
    if is_auto(cfg):
        return [g for g in cfg.auto.granularities if g != LAYERS]
    s = cfg.samples
    return [f"rect{s.rect_size}" if s.granularity == "rect" else s.granularity]


def from_nothing(cfg: Config) -> Config:
    """The settings of a run or campaign whose network knows nothing yet (no ``--model``):
    whole frames placed by distance alone until ``selection.spread_from_nothing`` frames are
    labelled in full, as such a network's uncertainty says nothing of where labels are needed
    (RESULTS.md "From nothing")."""
    sel = cfg.selection
    if sel.spread_from_nothing <= sel.spread_frames:
        return cfg
    spread = sel.model_copy(update={"spread_frames": sel.spread_from_nothing})
    return cfg.model_copy(update={"selection": spread})


def start_frames(videos: list[Video], cfg: Config) -> list[torch.Tensor] | None:
    """The frames a network started from nothing takes its BatchNorm statistics from:
    ``model.start_frames`` of the videos', evenly spaced, at working size; None when 0."""
    if not cfg.model.start_frames:
        return None
    return spread_frames([v.frames for v in videos], cfg.model.start_frames, cfg.model.scale)


def start_network(path: Path, videos: list[Video], classes: ClassList, cfg: Config) -> Path:
    """Write the starting network of a run or campaign from nothing at ``path``: built for
    ``classes``, its BatchNorm statistics taken from :func:`start_frames` of the videos
    (``network.normalise_on``), the one step it can learn before any label."""
    frames = start_frames(videos, cfg)
    return write_fresh_network(
        path, cfg.model.arch, classes, cfg.pretrain.seed, frames, cfg.output.batch_size
    )


def check_settings(cfg: Config) -> None:
    """Refuse, before any work, settings whose samples could not all be offered or used."""
    if is_auto(cfg):
        _check_auto(cfg)
    if wants_layers(cfg):
        _check_layers(cfg)


def _check_auto(cfg: Config) -> None:
    kinds = cfg.auto.granularities
    if not cfg.fusion.enabled:
        raise HvsaError(
            "granularity auto needs fusion.enabled: it prices samples by how well the label "
            "generator does on labelled frames left out"
        )
    if "frame" not in kinds:
        raise HvsaError(
            "auto.granularities must list frame: auto prices samples against frames labelled "
            "in full, and sends frames until it has enough of them"
        )
    if cfg.layers.enabled and LAYERS not in kinds:
        raise HvsaError(
            "layers.enabled does nothing with granularity auto: list layers in "
            "auto.granularities instead"
        )
    for name in kinds:
        if name == LAYERS:
            continue
        try:
            parse_granularity(name)
        except HvsaError:
            raise HvsaError(
                f"auto.granularities: unknown kind {name!r}: use frame, superpixel, rectN "
                "(N px) or layers"
            ) from None
        if cfg.auto.budgets.get(name, 0) < 1:
            raise HvsaError(
                f"auto.budgets needs at least 1 sample a round for {name} (has "
                f"{cfg.auto.budgets.get(name)})"
            )


def _check_layers(cfg: Config) -> None:
    if not cfg.fusion.enabled:
        raise HvsaError(
            "layers.enabled (or layers in auto.granularities) needs fusion.enabled: class "
            "layers act through the label generator"
        )
    g = cfg.samples.granularity
    if g not in ("frame", "auto"):
        raise HvsaError(
            f"layers.enabled needs whole frames (granularity {g}): layers start once "
            "fusion.calibration_probes frames are labelled in full, which rectangles and "
            "superpixels never make"
        )


def _level(cfg: Config) -> str:
    return f"{100 * cfg.fusion.estimate_level:.0f} %"


def stop_reason(metrics: dict, cfg: Config) -> str | None:
    """Why a video is done after a round (its ``metrics.json``), or None to go on.

    At ``loop.target_miou`` — against ground truth where the video has it, else against the
    lower end of the estimate's interval (``miou_interval``, ``engine.measure_round``; the
    estimate itself before the leave-one-out one exists) — at
    ``loop.rounds``, at ``loop.max_clicks``, or when a round found nothing left to label.
    """
    loop = cfg.loop
    if metrics["miou"] is not None and metrics["miou"] >= loop.target_miou:
        return f"reached mIoU {metrics['miou']:.3f}"
    estimate = metrics.get("miou_estimate")
    interval = metrics.get("miou_interval")
    if metrics["miou"] is None and interval is not None and interval[0] >= loop.target_miou:
        return (f"reached an estimated mIoU of {estimate:.3f}, at least {interval[0]:.3f} "
                f"at {_level(cfg)} (no ground truth)")  # fmt: skip
    if (
        metrics["miou"] is None
        and interval is None
        and estimate is not None
        and (estimate >= loop.target_miou)
    ):
        return f"reached an estimated mIoU of {estimate:.3f} (no ground truth)"
    if metrics["round"] >= loop.rounds:
        return f"round limit {loop.rounds}"
    if loop.max_clicks is not None and metrics["clicks_total"] >= loop.max_clicks:
        return f"click cap {loop.max_clicks}"
    if metrics["round"] > 0 and metrics["samples"] == 0:
        return "nothing left to label"
    return None


# Peak resident memory of `hvsa run` with params.yaml's defaults, an upper fit to what
# benchmarks/run_memory.py measured on 2026-12-02 (2 CPU cores; generated videos of 8-24 frames
# up to 960x1280, estimate 1.04-1.18x the peak: benchmarks/results/generated/run_memory.csv):
# the interpreter and torch before any video, bytes per pixel of the whole video (frames, flow,
# probabilities, belief, labels), bytes per pixel of one inference batch at the working size
# (the network's activations). On CamVid (101 frames of 720x960) it says 12.7 GiB where a round
# peaked at 6.0 GiB: it refuses only what cannot fit, it does not promise what will.
# A video read a few frames at a time (over data.in_memory_mb) keeps no frames, flow,
# training tensors, probabilities or belief in memory (they are read from disk in windows),
# only byte-per-pixel maps (human labels, layers, fused and predicted labels, ground truth):
# benchmarks/scale.py measured 1,000 frames of 360x480 at 2.7 GiB on 2026-12-03
# (results/scale.csv), under 6 bytes a pixel above the base; 12 is the upper estimate.
BASE_BYTES = 1.3 * 2**30
VIDEO_BYTES_PER_PIXEL = 160
LAZY_BYTES_PER_PIXEL = 12
BATCH_BYTES_PER_PIXEL = 200


def memory_needed(frames: int, height: int, width: int, cfg: Config) -> float:
    """Bytes a run of this video is expected to need at its peak (an upper estimate)."""
    work = height * width * cfg.model.scale**2
    lazy = reads_lazily(frames, height, width, cfg.data.in_memory_mb)
    video = frames * height * width * (LAZY_BYTES_PER_PIXEL if lazy else VIDEO_BYTES_PER_PIXEL)
    batch = min(frames, cfg.output.batch_size) * work * BATCH_BYTES_PER_PIXEL
    return BASE_BYTES + video + batch


def available_memory() -> float | None:
    """Bytes the system can still give this process (Linux's MemAvailable); None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(frames: int, height: int, width: int, cfg: Config) -> None:
    """Refuse, before anything is read, a video whose run would not fit in memory, saying
    how many frames of this size would."""
    free = available_memory()
    need = memory_needed(frames, height, width, cfg)
    if free is None or need <= free:
        return
    fit = 0
    while fit < frames and memory_needed(fit + 1, height, width, cfg) <= free:
        fit += 1
    gib = 2**30
    raise HvsaError(
        f"{frames} frames of {width}x{height} need about {need / gib:.1f} GiB, "
        f"{free / gib:.1f} GiB are available: split the video ({fit} frame"
        f"{'' if fit == 1 else 's'} of this size fit) or lower model.scale"
    )
