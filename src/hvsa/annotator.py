"""Annotators: who turns selected samples into labels, and what it cost.

The loop only talks to the :class:`Annotator` protocol, so the simulated oracle used for
benchmarks and a real human behind a web page are interchangeable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hvsa.clicks import ClickCount, dominant_label, region_clicks, superpixel_clicks
from hvsa.errors import HvsaError
from hvsa.samples import SampleSet
from hvsa.video import VOID, Video


@dataclass
class Annotation:
    """Labels for one sample: ``labels`` covers the sample's bbox, 255 outside its region."""

    sample_id: int
    frame: int
    box: tuple[slice, slice]
    labels: np.ndarray
    clicks: ClickCount
    annotator: str
    tool: str
    started: float
    finished: float
    detail: dict | None = None  # clicks by tool and active seconds, as counted at the source


class Annotator(Protocol):
    name: str

    def annotate(self, video: Video, samples: SampleSet, sample_ids: list[int]) -> list[Annotation]:
        """Return one annotation per requested sample id, in the same order."""
        ...


class OracleAnnotator:
    """A simulated annotator that copies the ground truth and charges the click model."""

    name = "oracle"

    def __init__(self, tolerance: float):
        self.tolerance = tolerance

    def annotate(self, video: Video, samples: SampleSet, sample_ids: list[int]) -> list[Annotation]:
        if video.labels is None:
            raise HvsaError(
                f"the oracle annotator needs ground truth, and {video.path} has no labels/"
            )
        out = []
        for sid in sample_ids:
            started = time.time()
            frame, box, mask = samples.region(sid)
            truth = video.labels[frame][box]
            if samples.granularity == "superpixel":
                cls = dominant_label(truth[mask])
                patch = np.where(mask, cls, VOID).astype(np.uint8)
                clicks = superpixel_clicks()
                tool = "superpixel-fill"
            else:
                patch = np.where(mask, truth, VOID).astype(np.uint8)
                clicks = region_clicks(truth, self.tolerance)
                tool = "polygon"
            out.append(
                Annotation(sid, frame, box, patch, clicks, self.name, tool, started, time.time())
            )
        return out


def make_annotator(name: str, tolerance: float) -> Annotator:
    """The annotator of an in-process run (human labels arrive through a campaign's inbox)."""
    if name == "oracle":
        return OracleAnnotator(tolerance)
    raise HvsaError(
        f"annotator {name!r} works in campaigns only (`hvsa campaign`), where the flow waits "
        "for submitted labels; `hvsa run` supports the oracle"
    )
