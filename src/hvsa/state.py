"""The state a round carries to the next: human labels, coverage, provenance, samples used.

Saved as one ``human.npz`` per round, so any round can be restored (and audited) on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvsa.annotator import Annotation
from hvsa.arrays import load_arrays, save_arrays
from hvsa.samples import SampleSet
from hvsa.video import VOID


@dataclass
class LoopState:
    """Human labels (N,H,W) uint8 (255 = none), which pixels a human covered (bool), per-pixel
    ``provenance`` (int32 ledger event id; 0 where the network predicts), samples used, and the
    clicks spent so far."""

    human: np.ndarray
    annotated: np.ndarray
    provenance: np.ndarray
    used: set[int]
    clicks_total: int = 0

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
        )

    def apply(
        self, annotations: list[Annotation], samples: SampleSet, event_ids: list[int]
    ) -> None:
        """Write annotations into the state; each labelled pixel remembers its ledger event."""
        for a, event_id in zip(annotations, event_ids, strict=True):
            _, _, mask = samples.region(a.sample_id)
            given = mask & (a.labels != VOID)
            self.human[a.frame][a.box][given] = a.labels[given]
            self.provenance[a.frame][a.box][given] = event_id
            self.annotated[a.frame][a.box] |= mask
            self.used.add(a.sample_id)
            self.clicks_total += a.clicks.total

    def candidates(
        self, ids: np.ndarray, n_pixels: np.ndarray, min_unlabelled: float
    ) -> np.ndarray:
        """Sample ids not yet labelled and with enough unlabelled pixels left.

        ``ids`` is the (N,H,W) global sample-id map; a sample partly covered by labels of
        another granularity stays a candidate while ``min_unlabelled`` of it is still free.
        """
        free = np.bincount(ids[~self.annotated], minlength=len(n_pixels))
        # a labelled sample is covered in full, so coverage alone rules it out; sample ids of
        # another granularity (``auto`` mixes them) must not
        return np.flatnonzero(free / n_pixels >= min_unlabelled)
