"""The click model: what a human pays to label a sample (Cai et al., CVPR 2021).

"Revisiting superpixels for active learning in semantic segmentation with realistic annotation
costs" charges region-based annotation as a polygon tool would:

* **frame or rectangle** — for each connected class region inside the sample, one click to pick
  its class, plus one click per vertex of its simplified outline (Douglas–Peucker, tolerance in
  px; outer boundary and holes) that lies strictly inside the sample (vertices on the sample's
  edge come free with the rectangle), plus one click for each point where a class boundary
  crosses the sample's edge (the annotator must place the polygon exactly there). Every region
  is outlined by its own polygon, so a boundary between two regions is drawn by both — the
  same convention for every strategy, which is what makes click counts comparable;
* **superpixel** — one click: the annotator names the dominant class and the whole superpixel
  receives it. That is why superpixels are cheap, and why they are imperfect at object borders.

Void pixels of the ground truth are not drawn (no region is charged for them), but boundaries
between a class and void still count, since the class's outline has to follow them.

Worked examples (also in the README and the tests):

* a 6×6 rectangle whose left 3 columns are road and right 3 columns car: two regions
  (2 clicks); every corner of both outlines lies on the rectangle's edge (0 clicks); the
  road/car boundary crosses the top and the bottom edge (2 clicks): **4 clicks**;
* a 32×32 rectangle of road with a 10×16 car fully inside: two regions (2), the car's 4 corners
  (4) and the same 4 corners again as the hole in the road's outline (4), no crossing: **10**;
* a superpixel, whatever it contains: **1 click**, and it takes its majority class.

A **class layer** (``class_layers.py``: every region of one class in a frame, the rest of the frame
known not to be that class) is the frame rule applied to that class alone: its regions, their
vertices and their crossings of the frame's edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hvsa.data.video import VOID


@dataclass(frozen=True)
class ClickCount:
    regions: int
    vertices: int
    crossings: int

    @property
    def total(self) -> int:
        return self.regions + self.vertices + self.crossings


def boundary_crossings(labels: np.ndarray) -> int:
    """Label changes met when walking once around the sample's edge (clockwise, cyclic)."""
    h, w = labels.shape
    if h == 1 or w == 1:
        ring = labels.ravel()
    else:
        ring = np.concatenate(
            [
                labels[0, :],
                labels[1:, -1],
                labels[-1, -2::-1],
                labels[-2:0:-1, 0],
            ]
        )
    if ring.size < 2:
        return 0
    return int((ring != np.roll(ring, -1)).sum())


def outlines(component: np.ndarray, tolerance: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each simplified outline (outer boundary and holes, Douglas–Peucker at ``tolerance``) of
    ``component``: its vertices (K, 2) as (x, y) in the array, and which lie strictly inside it
    (those on the edge come free with the sample)."""
    h, w = component.shape
    padded = np.pad(component.astype(np.uint8), 1)
    contours, _ = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    out = []
    for contour in contours:
        poly = cv2.approxPolyDP(contour, tolerance, True) if tolerance > 0 else contour
        pts = poly.reshape(-1, 2) - 1  # back to sample coordinates
        inside = (pts[:, 0] > 0) & (pts[:, 0] < w - 1) & (pts[:, 1] > 0) & (pts[:, 1] < h - 1)
        out.append((pts, inside))
    return out


def inner_vertices(component: np.ndarray, tolerance: float) -> int:
    """Vertices of the simplified outlines of ``component`` strictly inside its array."""
    return sum(int(inside.sum()) for _, inside in outlines(component, tolerance))


def region_clicks(labels: np.ndarray, tolerance: float, void: int = VOID) -> ClickCount:
    """Clicks to label a frame or rectangle whose ground truth is ``labels`` (h,w)."""
    regions = vertices = 0
    for cls in np.unique(labels):
        if cls == void:
            continue
        n, comp = cv2.connectedComponents((labels == cls).astype(np.uint8), connectivity=8)
        for k in range(1, n):
            regions += 1
            vertices += inner_vertices(comp == k, tolerance)
    return ClickCount(regions, vertices, boundary_crossings(labels))


def layer_clicks(labels: np.ndarray, cls: int, tolerance: float) -> ClickCount:
    """Clicks to outline every region of class ``cls`` in a frame whose ground truth is ``labels``.

    At least one: saying that the class is absent from the frame is an answer too.
    """
    count = region_clicks(np.where(labels == cls, cls, VOID).astype(np.uint8), tolerance)
    return count if count.total else ClickCount(1, 0, 0)


def superpixel_clicks() -> ClickCount:
    """One click names the dominant class of a superpixel."""
    return ClickCount(1, 0, 0)


def dominant_label(labels: np.ndarray, void: int = VOID) -> int:
    """Majority non-void class of a region (void when the region is all void)."""
    values = labels[labels != void]
    if values.size == 0:
        return void
    return int(np.bincount(values).argmax())
