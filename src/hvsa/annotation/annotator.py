"""Annotators: who turns selected samples into labels, and what it cost.

The loop only talks to the :class:`Annotator` protocol, so the simulated oracle used for
benchmarks and a real human behind a web page are interchangeable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hvsa.config import AnnotationConfig
from hvsa.data.video import VOID, Video
from hvsa.errors import HvsaError
from hvsa.method.clicks import (
    ClickCount,
    dominant_label,
    layer_clicks,
    region_clicks,
    superpixel_clicks,
)
from hvsa.method.corrections import correct, correct_layer
from hvsa.method.samples import SampleSet

# a frame's labels as hvsa wrote them in the previous round, by frame index: what the
# annotation app pre-fills and a person corrects
Prefill = Callable[[int], np.ndarray]


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

    def annotate(
        self, video: Video, samples: SampleSet, sample_ids: list[int], prefill: Prefill | None
    ) -> list[Annotation]:
        """Return one annotation per requested sample id, in the same order. ``prefill``: the
        labels the samples are shown with (an annotator that redraws ignores them)."""
        ...


class OracleAnnotator:
    """A simulated annotator that copies the ground truth and charges the click model."""

    name = "oracle"

    def __init__(self, tolerance: float):
        self.tolerance = tolerance

    def annotate(
        self,
        video: Video,
        samples: SampleSet,
        sample_ids: list[int],
        prefill: Prefill | None = None,
    ) -> list[Annotation]:
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
        self,
        video: Video,
        layers: list[tuple[int, int]],
        num_classes: int,
        prefill: Prefill | None = None,
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


class CorrectorAnnotator(OracleAnnotator):
    """A simulated person who corrects the prefilled labels instead of redrawing them, priced by
    the correction click model (:mod:`hvsa.method.corrections`): reassign a wrong region (1 click),
    redraw what is still wrong (a polygon), accept (1); errors below the stated size are left, so
    the hand-in is what a person would hand in, not the ground truth. Superpixels are named with
    one click, as the oracle does. Without a prefill (nothing written yet) it redraws."""

    name = "corrector"

    def __init__(self, tolerance: float, leave_width: int, leave_pixels: int, leave_share: float):
        super().__init__(tolerance)
        self.leave = (leave_width, leave_pixels, leave_share)

    def annotate(
        self,
        video: Video,
        samples: SampleSet,
        sample_ids: list[int],
        prefill: Prefill | None = None,
    ) -> list[Annotation]:
        if prefill is None or samples.granularity == "superpixel":
            return super().annotate(video, samples, sample_ids)
        self._need_truth(video)
        out = []
        for sid in sample_ids:
            started = time.time()
            frame, box, mask = samples.region(sid)
            fix = correct(prefill(frame)[box], video.labels[frame][box], mask, self.tolerance,
                          *self.leave)  # fmt: skip
            out.append(self._annotation(sid, frame, box, fix, started))
        return out

    def annotate_layers(
        self,
        video: Video,
        layers: list[tuple[int, int]],
        num_classes: int,
        prefill: Prefill | None = None,
    ) -> list[Annotation]:
        if prefill is None:
            return super().annotate_layers(video, layers, num_classes)
        self._need_truth(video)
        out = []
        for frame, cls in layers:
            started = time.time()
            fix = correct_layer(prefill(frame), video.labels[frame], cls, self.tolerance,
                                *self.leave)  # fmt: skip
            box = (slice(0, fix.labels.shape[0]), slice(0, fix.labels.shape[1]))
            sid = layer_id(frame, cls, num_classes)
            out.append(self._annotation(sid, frame, box, fix, started, cls))
        return out

    def _annotation(self, sid, frame, box, fix, started, layer_class=None) -> Annotation:
        tool = "polygon" if fix.from_scratch is not None else "correction"
        if layer_class is not None and fix.from_scratch is not None:
            tool = "class-layer"
        detail = {"clicks_by_tool": fix.by_tool, "left_pixels": fix.left_pixels}
        return Annotation(sid, frame, box, fix.labels, fix.clicks, self.name, tool, started,
                          time.time(), detail, layer_class)  # fmt: skip


def layer_id(frame: int, cls: int, num_classes: int) -> int:
    """The ledger's sample id of a class layer: negative, so that it never reads as a sample's
    (its geometry says ``layer``)."""
    return -(1 + frame * num_classes + cls)


def make_annotator(cfg: AnnotationConfig) -> Annotator:
    """The simulated annotator ``annotation.annotator`` names (people's labels arrive through a
    campaign's inbox instead)."""
    if cfg.annotator == "oracle":
        return OracleAnnotator(cfg.polygon_tolerance)
    if cfg.annotator == "corrector":
        return CorrectorAnnotator(
            cfg.polygon_tolerance, cfg.leave_width, cfg.leave_pixels, cfg.leave_share
        )
    name = cfg.annotator
    raise HvsaError(
        f"annotator {name!r} works in campaigns only (`hvsa campaign`), where the flow waits "
        "for submitted labels; `hvsa run` supports the oracle"
    )
