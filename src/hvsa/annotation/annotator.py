"""Annotators: who turns selected samples into labels, and what it cost.

The loop only talks to the :class:`Annotator` protocol, so the simulated oracle used for
benchmarks and a real human behind a web page are interchangeable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hvsa.data.video import VOID, Video
from hvsa.errors import HvsaError
from hvsa.method.clicks import (
    ClickCount,
    dominant_label,
    layer_clicks,
    region_clicks,
    superpixel_clicks,
)
from hvsa.method.samples import SampleSet


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
    layer_class: int | None = None  # a class layer (``class_layers.py``): the whole frame


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
        self._need_truth(video)
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

    def annotate_layers(
        self, video: Video, layers: list[tuple[int, int]], num_classes: int
    ) -> list[Annotation]:
        """One class layer per (frame, class): that class's pixels, charged by the click model."""
        self._need_truth(video)
        out = []
        for frame, cls in layers:
            started = time.time()
            truth = video.labels[frame]
            patch = np.where(truth == cls, cls, VOID).astype(np.uint8)
            box = (slice(0, truth.shape[0]), slice(0, truth.shape[1]))
            out.append(
                Annotation(
                    layer_id(frame, cls, num_classes),
                    frame,
                    box,
                    patch,
                    layer_clicks(truth, cls, self.tolerance),
                    self.name,
                    "class-layer",
                    started,
                    time.time(),
                    layer_class=cls,
                )  # fmt: skip
            )
        return out

    @staticmethod
    def _need_truth(video: Video) -> None:
        if video.labels is None:
            raise HvsaError(
                f"the oracle annotator needs ground truth, and {video.path} has no labels/"
            )


def layer_id(frame: int, cls: int, num_classes: int) -> int:
    """The ledger's sample id of a class layer: negative, so that it never reads as a sample's
    (its geometry says ``layer``)."""
    return -(1 + frame * num_classes + cls)


def make_annotator(name: str, tolerance: float) -> Annotator:
    """The annotator of an in-process run (human labels arrive through a campaign's inbox)."""
    if name == "oracle":
        return OracleAnnotator(tolerance)
    raise HvsaError(
        f"annotator {name!r} works in campaigns only (`hvsa campaign`), where the flow waits "
        "for submitted labels; `hvsa run` supports the oracle"
    )
