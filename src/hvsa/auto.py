"""``auto``: which granularity to label this round, from what each one has delivered so far.

Each granularity's batch (chosen by the ``gain`` selector) comes with a promise: the summed
expected mIoU gain of its samples (``gain.py``) for its expected clicks. That promise counts a
label's worth on its own pixels only. What a label really buys is different: a whole frame's
labels are carried by the flow to a dozen neighbours and teach the network the video, a small
rectangle's much less (measured: in round 1 on CamVid, 150 rectangles of 32 px promised 2.5×
the gain per click of 4 frames and delivered a sixth of it).

So the promise is calibrated by experience. After a round, the video's remaining deficit — the
summed pixel gain over every frame, what the belief thinks is still wrong, weighted as mIoU
weighs it — is measured again; its fall over the promise is that granularity's *yield*. A
granularity's offer is worth ``promise per click × its last yield``. A granularity not yet tried
yields 1 (taken at its word): a cheap batch is tried once, and if it disappoints it is not
chosen again until the others' promises have fallen below its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hvsa.gain import pixel_gain


def deficit(probs: torch.Tensor) -> float:
    """What the belief (N,C,h,w) expects is still wrong, in mIoU terms (summed pixel gain)."""
    return float(np.sum(pixel_gain(probs), dtype=np.float64))


@dataclass
class Offer:
    """One granularity's batch this round: its summed expected gain and expected clicks."""

    gain: float
    clicks: float

    @property
    def per_click(self) -> float:
        return self.gain / max(self.clicks, 1e-9)


@dataclass
class AutoChooser:
    """Picks a granularity per round and learns each one's yield from the round's outcome."""

    yields: dict[str, float] = field(default_factory=dict)
    _pending: tuple[str, float, float] | None = None  # chosen, promised gain, deficit before

    def worth(self, name: str, offer: Offer) -> float:
        """Calibrated expected mIoU gain per click of ``offer``."""
        return offer.per_click * self.yields.get(name, 1.0)

    def choose(self, offers: dict[str, Offer], before: float) -> str:
        """The granularity whose offer is worth most; ``before`` is the deficit now."""
        if not offers:
            raise ValueError("no granularity has anything left to offer")
        name = max(offers, key=lambda k: self.worth(k, offers[k]))
        self._pending = (name, offers[name].gain, before)
        return name

    def settle(self, after: float) -> float | None:
        """Record the chosen granularity's yield, given the deficit after the round."""
        if self._pending is None:
            return None
        name, promised, before = self._pending
        self._pending = None
        # a round that made the belief less sure of itself delivered nothing, not less
        self.yields[name] = max(before - after, 0.0) / max(promised, 1e-12)
        return self.yields[name]
