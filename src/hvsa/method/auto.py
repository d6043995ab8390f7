"""``auto``: what to label this round — whole frames, rectangles, superpixels or class layers —
priced in estimated mIoU per click against the truth the video already holds.

Why against labelled truth: a batch priced by what the belief expects its own pixels to gain
(even scaled by each granularity's past yield measured on the belief) lets rectangles win,
because fine-tuning on small patches makes the belief sure of itself faster than it makes it
right (``benchmarks/RESULTS.md``, ``auto``). So:

- each class's quality ``q_c`` on pixels no human labelled is estimated by the leave-one-out of
  the calibration (``calibrate.py``: frames labelled in full, fused without their own labels);
- the video's estimated mIoU is ``mean_c [K_c + (U_c − K_c)·q_c] / U_c``, with ``U_c`` the class's
  expected pixels in the video (soft counts of the belief) and ``K_c`` those a human has labelled
  (frames, rectangles, superpixels or layers);
- a batch promises ``(1 − q_c)/U_c`` for each expected class-``c`` pixel it covers, averaged over
  classes the estimate can weigh: its own pixels only;
- after the batch is labelled the estimate is taken again (next round, with ``q_c`` measured
  again, so carried labels and fine-tuning show); the rise over the promise is that kind's
  *yield*, and an offer is worth ``promise / clicks × yield`` (a kind not tried yet: 1, taken at
  its word);
- with ``learn_prices``, an offer's clicks are also scaled by what that kind's last batch
  really cost against what it was expected to (its *price*): the expected clicks are the click
  model's for drawing the batch from nothing, and an annotator who corrects the prefill
  (``annotation.annotator: corrector``, people in the app) pays less for some kinds than for
  others.

Until ``fusion.calibration_probes`` frames are labelled in full there is no estimate, and auto
sends whole frames — which are what the estimate needs (a rectangle never makes a probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hvsa.data.video import VOID

LAYERS = "layers"  # the name class layers go by in ``auto.granularities``


def class_pixels(probs: torch.Tensor) -> np.ndarray:
    """(N,C) expected pixels of each class in each frame: the belief's soft counts."""
    return np.concatenate(
        [probs[i : i + 16].float().sum((2, 3)).double().numpy() for i in range(0, len(probs), 16)]
    )


def region_class_pixels(
    probs: torch.Tensor, segments: np.ndarray, frames: np.ndarray, segment_ids: np.ndarray
) -> np.ndarray:
    """(S,C) expected pixels of each class in samples given by frame and segment id, from the
    belief (N,C,h,w) and the working-size segment maps (N,h,w)."""
    out = np.zeros((len(frames), probs.shape[1]))
    for f in np.unique(frames):
        seg = segments[f].ravel()
        p = probs[f].float().reshape(probs.shape[1], -1).numpy()
        here = np.flatnonzero(frames == f)
        # a segment that shrank away at the working size still has a row (of zeros)
        n = max(int(seg.max()), int(segment_ids[here].max())) + 1
        sums = np.stack([np.bincount(seg, p[c], minlength=n) for c in range(len(p))])
        out[here] = sums[:, segment_ids[here]].T
    return out


def known_pixels(human: np.ndarray, layers: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) pixels of each class a human has labelled, in frames and rectangles or in layers
    (a pixel both give counts once)."""
    given = np.bincount(human[human != VOID].ravel(), minlength=num_classes)[:num_classes]
    only_drawn = layers[(layers != VOID) & (human == VOID)]
    drawn = np.bincount(only_drawn.ravel(), minlength=num_classes)[:num_classes]
    return (given + drawn).astype(float)


def _usable(quality: np.ndarray, totals: np.ndarray) -> np.ndarray:
    # a class the probes never show has no quality estimate; one the belief expects nowhere
    # cannot be weighed
    return np.isfinite(quality) & (totals > 0)


def estimated_iou(quality: np.ndarray, known: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """(C,) each class's estimated IoU over the video: labelled pixels right, the rest right at
    rate ``quality``; NaN for a class that cannot be weighed. Their ``metrics.mean_iou`` is
    the video's estimated mIoU.

    ``known`` and ``totals`` (C,) must count pixels at the same scale.
    """
    out = np.full(len(quality), np.nan)
    ok = _usable(quality, totals)
    k = np.minimum(known[ok], totals[ok])
    out[ok] = (k + (totals[ok] - k) * quality[ok]) / totals[ok]
    return out


def promise(quality: np.ndarray, covered: np.ndarray, totals: np.ndarray) -> float:
    """Estimated mIoU rise from labelling ``covered`` (C,) expected pixels of each class."""
    ok = _usable(quality, totals)
    if not ok.any():
        return 0.0
    share = np.minimum(covered[ok], totals[ok]) / totals[ok]
    # over the classes the estimate weighs, so that a batch delivering its promise yields 1
    return float(np.sum((1 - quality[ok]) * share) / ok.sum())


@dataclass
class Offer:
    """One kind's batch this round: its promised mIoU rise and expected clicks."""

    gain: float
    clicks: float

    @property
    def per_click(self) -> float:
        return self.gain / max(self.clicks, 1e-9)


@dataclass
class AutoChooser:
    """Picks a kind of sample per round and learns each one's yield from the estimate's rise."""

    yields: dict[str, float] = field(default_factory=dict)
    # actual clicks / expected clicks of each kind's last batch (``learn_prices``)
    prices: dict[str, float] = field(default_factory=dict)
    learn_prices: bool = False
    # chosen, promised gain, (C,) estimated IoU per class before
    _pending: tuple[str, float, np.ndarray] | None = None
    # the chosen batch's kind, expected clicks, and the clicks spent before it
    _bill: tuple[str, float, float] | None = None

    def worth(self, name: str, offer: Offer) -> float:
        """Calibrated expected mIoU gain per click of ``offer``."""
        price = self.prices.get(name, 1.0) if self.learn_prices else 1.0
        return offer.per_click * self.yields.get(name, 1.0) / max(price, 1e-3)

    def choose(self, offers: dict[str, Offer], before: np.ndarray, spent: float = 0.0) -> str:
        """The kind whose offer is worth most; ``before`` is :func:`estimated_iou` now,
        ``spent`` the clicks spent on the video so far."""
        if not offers:
            raise ValueError("no kind of sample has anything left to offer")
        name = max(offers, key=lambda k: self.worth(k, offers[k]))
        self._pending = (name, offers[name].gain, np.asarray(before, float))
        self.bill(name, offers[name].clicks, spent)
        return name

    def bill(self, name: str, expected: float, spent: float) -> None:
        """A batch of kind ``name`` is being labelled, expected to cost ``expected`` clicks, with
        ``spent`` clicks spent on the video before it (also for batches auto did not choose:
        the whole frames it sends before it can estimate anything)."""
        self._bill = (name, float(expected), float(spent))

    def settle_price(self, spent: float) -> float | None:
        """Record the billed kind's price, given the clicks ``spent`` on the video by now."""
        if self._bill is None:
            return None
        name, expected, before = self._bill
        self._bill = None
        if expected <= 0 or spent <= before:
            return None
        self.prices[name] = (spent - before) / expected
        return self.prices[name]

    def settle(self, after: np.ndarray, spent: float | None = None) -> float | None:
        """Record the chosen kind's yield, given :func:`estimated_iou` once its labels are in
        (and, given the clicks ``spent`` on the video by now, its price).

        The rise is taken over the classes weighed both times (probes are re-spread as frames
        are labelled, and a class may enter or leave them); a batch that promised nothing
        teaches nothing.
        """
        if spent is not None:
            self.settle_price(spent)
        if self._pending is None:
            return None
        name, promised, before = self._pending
        self._pending = None
        after = np.asarray(after, float)
        both = np.isfinite(before) & np.isfinite(after)
        if not both.any() or promised <= 0:
            return None
        rise = float(np.mean(after[both] - before[both]))
        # a round after which the estimate fell delivered nothing, not less
        self.yields[name] = max(rise, 0.0) / promised
        return self.yields[name]

    def to_json(self) -> dict:
        """What a round hands to the next (a campaign's ``auto.json``): yields and the pending
        choice, whose yield the next round settles."""
        pending = None
        if self._pending is not None:
            name, promised, before = self._pending
            pending = {"name": name, "promised": promised,
                       "before": [None if np.isnan(v) else float(v) for v in before]}  # fmt: skip
        out = {"yields": dict(self.yields), "pending": pending}
        if self._bill is not None:
            out["bill"] = list(self._bill)
        return out | ({"prices": dict(self.prices)} if self.prices else {})

    @classmethod
    def from_json(cls, data: dict) -> AutoChooser:
        floats = lambda key: {str(k): float(v) for k, v in data.get(key, {}).items()}  # noqa: E731
        chooser = cls(yields=floats("yields"), prices=floats("prices"))
        if (pending := data.get("pending")) is not None:
            before = np.array([np.nan if v is None else v for v in pending["before"]], float)
            chooser._pending = (str(pending["name"]), float(pending["promised"]), before)
        if (bill := data.get("bill")) is not None:
            chooser._bill = (str(bill[0]), float(bill[1]), float(bill[2]))
        return chooser
