"""The state a round carries to the next: human labels, coverage, provenance, samples used.

Saved as one ``human.npz`` per round, so any round can be restored (and audited) on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hvsa.annotation.annotator import Annotation
from hvsa.data.arrays import load_arrays, save_arrays
from hvsa.data.video import VOID
from hvsa.method.samples import SampleSet


@dataclass
class LoopState:
    """Human labels (N,H,W) uint8 (255 = none), which pixels a human covered (bool), per-pixel
    ``provenance`` (int32 ledger event id; 0 where the network predicts), samples used, the
    clicks spent so far, and the class layers (``class_layers.py``): ``layers`` (N,H,W) uint8 the
    class a layer gave a pixel (255 elsewhere), ``complete`` the (frame, class) layers given.

    Layers stay apart from ``human``: a layer says nothing of the frame's other classes, so it
    must neither be carried to other frames nor taught to the network as a frame's labels.

    ``named`` (N,H,W) bool marks the human labels named for a whole region with one click (a
    superpixel handed in as one class, its dominant class by the click model): fusion weighs
    them as evidence rather than truth (``fusion.region_odds``), as some of their pixels are
    another class. None until a label is named: a run without superpixels holds no such array
    (a long video's state stays the size it was).
    """

    human: np.ndarray
    annotated: np.ndarray
    provenance: np.ndarray
    used: set[int]
    clicks_total: int = 0
    layers: np.ndarray | None = None
    complete: set[tuple[int, int]] = field(default_factory=set)
    named: np.ndarray | None = None
    # frames whose human labels (``touched``) or class layers (``touched_layers``) changed
    # since the labels were last made: what an incremental round re-fuses around (not saved:
    # a resumed run fuses every frame)
    touched: set[int] = field(default_factory=set)
    touched_layers: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.layers is None:
            self.layers = np.full(self.human.shape, VOID, np.uint8)

    def complete_mask(self, num_classes: int) -> np.ndarray:
        """(N,C) bool: which classes each frame has a layer of."""
        out = np.zeros((len(self.human), num_classes), bool)
        for frame, cls in self.complete:
            out[frame, cls] = True
        return out

    @classmethod
    def empty(cls, frames: int, size: tuple[int, int]) -> LoopState:
        return cls(
            human=np.full((frames, *size), VOID, np.uint8),
            annotated=np.zeros((frames, *size), bool),
            provenance=np.zeros((frames, *size), np.int32),
            used=set(),
        )

    def save(self, path: Path) -> None:
        save_arrays(
            path,
            compressed=True,
            labels=self.human,
            annotated=self.annotated,
            provenance=self.provenance,
            used=np.asarray(sorted(self.used), np.int64),
            clicks_total=np.int64(self.clicks_total),
            layers=self.layers,
            complete=np.asarray(sorted(self.complete), np.int64).reshape(-1, 2),
            **({} if self.named is None else {"named": self.named}),
        )

    @classmethod
    def load(cls, path: Path) -> LoopState:
        data = load_arrays(path, "round state")
        return cls(
            human=data["labels"],
            annotated=data["annotated"],
            provenance=data["provenance"],
            used={int(i) for i in data["used"]},
            clicks_total=int(data["clicks_total"]),
            # rounds saved before class layers existed hold none
            layers=data.get("layers"),
            complete={(int(f), int(c)) for f, c in data.get("complete", np.zeros((0, 2)))},
            # rounds saved before named labels were told apart hold none
            named=data.get("named"),
        )

    def apply(
        self, annotations: list[Annotation], samples: SampleSet, event_ids: list[int]
    ) -> None:
        """Write annotations into the state; each labelled pixel remembers its ledger event."""
        for a, event_id in zip(annotations, event_ids, strict=True):
            if a.layer_class is not None:
                self._apply_layer(a, event_id)
                continue
            _, _, mask = samples.region(a.sample_id)
            given = mask & (a.labels != VOID)
            self.human[a.frame][a.box][given] = a.labels[given]
            self._mark_named(a.frame, a.box, given, named_region(samples, a.labels[given]))
            self.provenance[a.frame][a.box][given] = event_id
            self.annotated[a.frame][a.box] |= mask
            self.touched.add(a.frame)
            self.used.add(a.sample_id)
            self.clicks_total += a.clicks.total

    def apply_frames(
        self,
        labels: dict[int, np.ndarray],
        clicks: dict[int, int],
        event_ids: list[int],
        whole: float,
    ) -> None:
        """Whole-frame labels from outside the rounds (``annotation.existing``): the pixels they
        give, each remembering its event. A frame labelled on at least ``whole`` of its pixels
        is covered in full, as a frame the oracle labels is (its void pixels the annotator's
        "no class"): it is no candidate any more and a leave-one-out probe; a frame labelled
        on less is covered where given, a candidate for the rest."""
        for frame, event_id in zip(sorted(labels), event_ids, strict=True):
            given = labels[frame] != VOID
            self.human[frame][given] = labels[frame][given]
            self._mark_named(frame, (slice(None), slice(None)), given, False)
            self.provenance[frame][given] = event_id
            self.annotated[frame] |= True if given.mean() >= whole else given
            self.touched.add(frame)
            self.clicks_total += int(clicks[frame])

    def _mark_named(self, frame: int, box: tuple[slice, slice], given: np.ndarray,
                    named: bool) -> None:  # fmt: skip
        """Mark ``given`` pixels of ``frame``'s ``box`` as named or drawn (the last label wins)."""
        if self.named is None:
            if not named:
                return
            self.named = np.zeros(self.human.shape, bool)
        self.named[frame][box][given] = named

    def drawn_human(self) -> np.ndarray:
        """``human`` without the named labels: the pixels a person drew, which are known."""
        return self.human if self.named is None else np.where(self.named, VOID, self.human)

    def _apply_layer(self, a: Annotation, event_id: int) -> None:
        """A class layer: its pixels, and where no frame label speaks, its provenance."""
        given = a.labels != VOID
        self.layers[a.frame][a.box][given] = a.labels[given]
        own = given & (self.human[a.frame][a.box] == VOID)
        self.provenance[a.frame][a.box][own] = event_id
        self.complete.add((a.frame, a.layer_class))
        self.touched_layers.add(a.frame)
        self.clicks_total += a.clicks.total

    def candidates(self, samples: SampleSet, min_unlabelled: float) -> np.ndarray:
        """Sample ids not yet labelled and with enough unlabelled pixels left.

        A sample partly covered by labels of another granularity stays a candidate while
        ``min_unlabelled`` of it is still free. Counted a frame at a time from the frame's
        region ids: a whole video's map of global sample ids would be 8 bytes a pixel.
        """
        n_pixels = samples.table["n_pixels"].to_numpy()
        starts = samples.table.groupby("frame")["sample_id"].min()
        free = np.zeros(len(n_pixels), np.int64)
        for frame, start in starts.items():
            seg = samples.segments[int(frame)]
            count = np.bincount(seg[~self.annotated[int(frame)]].ravel())
            free[start : start + count.size] += count
        # a labelled sample is covered in full, so coverage alone rules it out; sample ids of
        # another granularity (``auto`` mixes them) must not
        return np.flatnonzero(free / n_pixels >= min_unlabelled)


def named_region(samples: SampleSet, given: np.ndarray) -> bool:
    """Whether a sample's labels (``given``: its labelled pixels) name its region's class
    rather than draw it: a superpixel handed in as one class. A superpixel handed in with
    several classes was drawn, pixel by pixel, and is as certain as any drawn label. Judged by
    what was handed in, not by the tool, so the oracle's fill, the app's superpixel click and an
    imported one-class mask are alike; a superpixel a person drew that truly is one class is
    taken as named, which costs little: it is overruled only where the belief holds another
    class more than ``1 + fusion.region_odds`` times as likely, and is no truth for the guided
    radius's calibration (it still carries votes there)."""
    if samples.granularity != "superpixel" or given.size == 0:
        return False
    return bool((given == given[0]).all())
