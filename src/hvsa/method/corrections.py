"""The correction click model: what a person pays to *fix* the labels hvsa pre-fills.

The annotation app shows every sample with hvsa's labels already in it (the prefill: human
labels carried along the flow, fused with the network). A person does not redraw what is right;
they fix what is wrong, with the app's fix tools, and that is what this model prices:

* **reassign** — one click on a region of the prefill (a connected component of one class)
  gives the whole region another class. A region is reassigned when most of its pixels (void
  of the ground truth aside) belong to one other class;
* **redraw** — what is still wrong after that is drawn over with a polygon: for each wrong
  region (a connected component of the pixels of one true class that the prefill, reassigned,
  gets wrong), one click to close it and name its class, plus the vertices of its simplified
  outline that lie strictly inside the sample (Douglas–Peucker at ``tolerance`` px, outer
  boundary and holes), plus one click for each point where its outline crosses the sample's
  edge — the polygon rule of :mod:`hvsa.method.clicks`, applied to the wrong region alone —
  except that the polygon need not follow the region's outline where it borders pixels that are
  of its class already: there it may cut across them, so each run of outline vertices farther
  than ``tolerance`` from any pixel of another class costs one vertex, not one each (a missed
  strip along a pole is outlined with care on its open side only);
* **accept** — one click hands the sample in ("accept the rest").

A person does not chase every stray pixel. A wrong region is **left as it is** when it is small —
fewer than ``leave_pixels`` pixels, or nowhere wider than ``leave_width`` px (a morphological
opening with a square of side ``leave_width + 1`` removes it): a band along a border that thin
is below what the polygon model itself resolves (its vertices sit within ``tolerance`` px of the
true outline) — *and* small beside the objects it spoils: under ``leave_share`` of the true
object it belongs to and of the labelled object it was taken for (the connected regions of one
class that hold it). A 2 px band along a road's border is left; the same band along a 4 px
pole is half the pole, and is fixed. Left pixels are handed in wrong, and the labels are scored
as handed in.

Redrawing from nothing is always possible: when fixing would cost at least as many clicks as the
full polygon model (:func:`hvsa.method.clicks.region_clicks`), the person draws the sample from
nothing instead, pays that price, and hands in the exact labels, as the oracle does.

Pixels that are void in the ground truth (CamVid leaves 0.4–2 % unlabelled) are not the
person's concern: they keep the prefill in the hand-in, and no click is charged for them.

A **class layer** (every region of one class in a frame) is corrected the same way on two
classes, "the class" and "not the class": false regions and missed regions are reassigned or
redrawn, and the price is capped by drawing the layer from nothing
(:func:`hvsa.method.clicks.layer_clicks`).

Worked examples (unit tests in ``tests/test_corrections.py``, and docs/click-model.md):

* a prefill that is already right: **1 click** (accept);
* a 32×32 rectangle of road whose prefill has a 10×16 region labelled car that is really
  sidewalk: reassign it (1) + accept (1) = **2 clicks** (redrawing from nothing: 10);
* the same rectangle whose prefill is all road while the truth has a 10×16 sidewalk patch
  inside: redraw the patch (1 + 4 inner vertices) + accept (1) = **6 clicks**;
* a 160×160 prefill whose road/sidewalk border is 2 px off along its whole length: left (a
  2 px band, 2.5 % of the sidewalk), **1 click**, and the band's pixels stay wrong; the same
  band along a 6 px wide pole is a third of the pole: redrawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from hvsa.data.video import VOID
from hvsa.method.clicks import ClickCount, boundary_crossings, layer_clicks, outlines
from hvsa.method.clicks import region_clicks as scratch_clicks


@dataclass(frozen=True)
class Correction:
    """What a person hands in for one sample, and the clicks it took, tool by tool."""

    labels: np.ndarray  # (h, w) uint8: the hand-in, void outside the sample's region
    reassigned: int  # prefill regions given another class, one click each
    redrawn: int  # wrong regions drawn over with a polygon, one click each to close and name
    vertices: int  # the redrawn polygons' vertices inside the sample
    crossings: int  # where the redrawn polygons cross the sample's edge
    accepted: int  # 1: the click that hands the sample in; 0 when drawn from nothing
    left_pixels: int  # wrong pixels left as they are (below the stated size)
    from_scratch: ClickCount | None  # drawn from nothing: the full polygon model's count

    @property
    def total(self) -> int:
        if self.from_scratch is not None:
            return self.from_scratch.total
        return self.reassigned + self.redrawn + self.vertices + self.crossings + self.accepted

    @property
    def clicks(self) -> ClickCount:
        """The same clicks in the ledger's three columns: every one-click action (reassign,
        close-and-name, accept) is a region click."""
        if self.from_scratch is not None:
            return self.from_scratch
        return ClickCount(self.reassigned + self.redrawn + self.accepted, self.vertices,
                          self.crossings)  # fmt: skip

    @property
    def by_tool(self) -> dict[str, int]:
        """The clicks as the app's tools count them (the ledger's ``clicks_detail``)."""
        if self.from_scratch is not None:
            return {"polygon": self.from_scratch.total}
        tools = {"reassign": self.reassigned, "polygon": self.redrawn + self.vertices
                 + self.crossings, "accept": self.accepted}  # fmt: skip
        return {k: v for k, v in tools.items() if v}


def reassign(prefill: np.ndarray, truth: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, int]:
    """The prefill with every region whose pixels mostly belong to one other class given that
    class (one click each), and how many were."""
    out = prefill.copy()
    count = 0
    known = region & (truth != VOID)
    for cls in np.unique(prefill[region]):
        n, comp = cv2.connectedComponents(((prefill == cls) & region).astype(np.uint8), 8)
        if n <= 1:
            continue
        k = comp[known]  # component of each pixel with a true class
        votes = np.bincount(k * 256 + truth[known], minlength=n * 256).reshape(n, 256)
        votes[:, VOID] = 0
        best = votes.argmax(1)
        for c in range(1, n):
            if best[c] != cls and votes[c, best[c]] > votes[c, cls]:
                out[comp == c] = best[c]
                count += 1
    return out, count


def _objects(labels: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every connected region of one class (8 neighbours) inside ``region``: an id per pixel
    (0 outside the region) and each id's pixel count."""
    ids = np.zeros(labels.shape, np.int32)
    sizes = [0]
    for cls in np.unique(labels[region]):
        n, comp = cv2.connectedComponents(((labels == cls) & region).astype(np.uint8), 8)
        inside = comp > 0
        ids[inside] = comp[inside] + len(sizes) - 1
        sizes.extend(np.bincount(comp[inside], minlength=n)[1:])
    return ids, np.asarray(sizes)


def fix_vertices(part: np.ndarray, free: np.ndarray, tolerance: float) -> int:
    """Clicks on the vertices of a polygon drawn over the wrong region ``part`` (h, w bool):
    its simplified outline's vertices strictly inside the sample, where a run of consecutive
    vertices on ``free`` pixels (the polygon may stray there: they hold its class already)
    costs one; at least 3, or all of them if fewer (a polygon has three corners)."""
    count = 0
    for pts, inside in outlines(part, tolerance):
        loose = inside & free[pts[:, 1], pts[:, 0]]
        fixed = int((inside & ~loose).sum())
        # runs of loose vertices along the closed outline
        runs = int((loose & ~np.roll(loose, 1)).sum()) if not loose.all() else 1
        count += max(fixed + runs, min(3, int(inside.sum())))
    return count


def _free(truth: np.ndarray, region: np.ndarray, cls: int, tolerance: float) -> np.ndarray:
    """Pixels farther than ``tolerance`` from any pixel of the region whose true class is
    neither ``cls`` nor void: a polygon of class ``cls`` may pass there without harm."""
    other = region & (truth != cls) & (truth != VOID)
    if not other.any():
        return np.ones(truth.shape, bool)
    dist = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 3)
    return dist > tolerance + 0.5


def _wide(mask: np.ndarray, leave_width: int) -> np.ndarray:
    """The pixels of ``mask`` that survive an opening with a square of side leave_width + 1."""
    if leave_width <= 0:
        return mask
    kernel = np.ones((leave_width + 1, leave_width + 1), np.uint8)
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)


@dataclass(frozen=True)
class WrongRegion:
    """One connected region of one true class that a prefill gets wrong."""

    cls: int  # its true class
    part: np.ndarray  # (h, w) bool: its pixels
    free: np.ndarray  # (h, w) bool: where a polygon of ``cls`` may stray (:func:`_free`; one
    # array shared by the regions of a class: read it, never write it)
    left: bool  # small enough to be left as it is (the module's rule)


def wrong_regions(
    fixed: np.ndarray,
    truth: np.ndarray,
    region: np.ndarray,
    tolerance: float,
    leave_width: int,
    leave_pixels: int,
    leave_share: float,
) -> Iterator[WrongRegion]:
    """Every region that ``fixed`` (h, w; the prefill after reassigning) gets wrong inside
    ``region``, and whether a person leaves it: what :func:`correct` redraws, and what the
    diagnosis of other tools (``benchmarks/superpixel_fix_price.py``) prices again. One at a
    time (a region is a whole-frame mask); ``fixed`` is read before the first, so the caller
    may fix each region as it comes."""
    wrong = region & (truth != VOID) & (fixed != truth)
    true_ids, true_sizes = _objects(truth, region)
    shown_ids, shown_sizes = _objects(fixed, region)
    for cls in np.unique(truth[wrong]):
        mask = wrong & (truth == cls)
        free = _free(truth, region, cls, tolerance)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), None, 8)
        wide = np.bincount(comp[_wide(mask, leave_width)], minlength=n) > 0
        for c in range(1, n):
            part = comp == c
            area = int(stats[c, cv2.CC_STAT_AREA])
            # the true object holding it, and the labelled object it mostly lies in
            spoils = min(true_sizes[true_ids[part][0]],
                         shown_sizes[np.bincount(shown_ids[part]).argmax()])  # fmt: skip
            small = area < leave_pixels or not wide[c]
            yield WrongRegion(int(cls), part, free, small and area < leave_share * spoils)


def correct(
    prefill: np.ndarray,
    truth: np.ndarray,
    region: np.ndarray,
    tolerance: float,
    leave_width: int,
    leave_pixels: int,
    leave_share: float,
    scratch: bool = True,
) -> Correction:
    """Fix ``prefill`` (h, w) towards ``truth`` (h, w) inside ``region`` (h, w bool) with the
    fewest clicks of the model above; the hand-in and its price. ``scratch=False``: the fix
    alone, even where drawing from nothing would be cheaper (a fix made in the app, priced)."""
    fixed, reassigned = reassign(prefill, truth, region)
    redrawn = vertices = crossings = left = 0
    for w in wrong_regions(fixed, truth, region, tolerance, leave_width, leave_pixels,
                           leave_share):  # fmt: skip
        if w.left:
            left += int(w.part.sum())
            continue
        redrawn += 1
        vertices += fix_vertices(w.part, w.free, tolerance)
        crossings += boundary_crossings(w.part.astype(np.uint8))
        fixed[w.part] = w.cls
    labels = np.where(region, fixed, VOID).astype(np.uint8)
    fix = Correction(labels, reassigned, redrawn, vertices, crossings, 1, left, None)
    if not scratch:
        return fix
    drawn = scratch_clicks(np.where(region, truth, VOID).astype(np.uint8), tolerance)
    if fix.total < drawn.total:
        return fix
    exact = np.where(region, truth, VOID).astype(np.uint8)
    return Correction(exact, 0, 0, 0, 0, 0, 0, drawn)


def correct_layer(
    prefill: np.ndarray,
    truth: np.ndarray,
    cls: int,
    tolerance: float,
    leave_width: int,
    leave_pixels: int,
    leave_share: float,
    scratch: bool = True,
) -> Correction:
    """Fix a class layer: the prefill's pixels of ``cls`` in a whole frame towards the truth's
    (two classes, the class and the rest; void of the truth kept void). The hand-in holds
    ``cls`` where the layer says so and void elsewhere, as a layer drawn from nothing does.
    ``scratch=False``: the fix alone, even where drawing the layer would be cheaper (what
    fixing a layer costs, ``benchmarks/layer_fix_price.py``)."""
    two = lambda labels: np.where(labels == cls, 1, 0).astype(np.uint8)  # noqa: E731
    truth2 = np.where(truth == VOID, VOID, two(truth)).astype(np.uint8)
    everywhere = np.ones(truth.shape, bool)
    fix = correct(two(prefill), truth2, everywhere, tolerance, leave_width, leave_pixels,
                  leave_share, scratch)  # fmt: skip
    drawn = layer_clicks(truth, cls, tolerance) if scratch else None
    if drawn is None or (fix.from_scratch is None and fix.total < drawn.total):
        layer = np.where(fix.labels == 1, cls, VOID).astype(np.uint8)
        return Correction(layer, fix.reassigned, fix.redrawn, fix.vertices, fix.crossings,
                          fix.accepted, fix.left_pixels, None)  # fmt: skip
    exact = np.where(truth == cls, cls, VOID).astype(np.uint8)
    return Correction(exact, 0, 0, 0, 0, 0, 0, drawn)
