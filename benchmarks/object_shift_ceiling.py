"""Could any carrying do better on thin classes? The ground truth of frame t against t + d.

Why: a human label carried along the flow scores pole IoU .61-.65 one frame away on CamVid
0016E5_15hz (``carry_ceiling.py``), so the labels reach 95 % only once nearly every frame's poles
are drawn. If the flow were at fault, a better tracker would lift that; if the truth itself
changes shape from one frame to the next, nothing carried can. This script scores, per class,
the ground truth of frame t as a guess for frame t + d, three ways:

* ``unmoved``: as it is;
* ``flow``: carried by the flow hvsa computes (params.yaml's ``flow``; nearest-neighbour warp);
* ``best_shift``: every connected object of the class moved by the one translation (within
  ``--reach`` px) that overlaps the truth of t + d most — a tracker that knows the answer, an
  upper bound on any rigid carrying of whole objects.

    C=../shared/datasets/camvid/clips
    .venv/bin/python benchmarks/object_shift_ceiling.py $C/0016E5_15hz \
        benchmarks/results/0016E5_15hz/object_shift_ceiling.csv

Writes one row per (distance, class): pooled IoU each way and the class's share of pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from probe_common import save_table
from tqdm import tqdm

from hvsa.config import load_config
from hvsa.data.video import VOID, load_video
from hvsa.method.motion import compute_flow, warp


def best_shift(here: np.ndarray, there: np.ndarray, reach: int) -> np.ndarray:
    """``here`` (h, w bool) with each connected object moved by the translation, within
    ``reach`` px, that covers most of ``there`` (h, w bool)."""
    h, w = here.shape
    padded = np.pad(there.astype(np.float32), reach)
    out = np.zeros_like(here)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(here.astype(np.uint8), None, 8)
    for c in range(1, n):
        x, y, bw, bh, _ = stats[c]
        template = (comp[y : y + bh, x : x + bw] == c).astype(np.float32)
        window = padded[y : y + bh + 2 * reach, x : x + bw + 2 * reach]
        hits = cv2.matchTemplate(window, template, cv2.TM_CCORR)
        _, _, _, (dx, dy) = cv2.minMaxLoc(hits)
        ys, xs = np.nonzero(comp == c)
        ys, xs = ys + dy - reach, xs + dx - reach
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        out[ys[inside], xs[inside]] = True
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--every", type=int, default=3, help="a start frame every this many frames")
    ap.add_argument("--distances", nargs="+", type=int, default=[1, 3])
    ap.add_argument("--reach", type=int, default=16, help="largest shift tried (px)")
    args = ap.parse_args()
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    video = load_video(args.video, cfg.data.classes_file, cfg.data.void_id)
    assert video.labels is not None, "needs ground truth"
    gt, names = video.labels, video.classes.names
    rows = []
    for d in args.distances:
        counts = np.zeros((len(names), 3, 2), np.int64)  # class, way, (intersection, union)
        share = np.zeros(len(names), np.int64)
        for t in tqdm(range(0, len(gt) - d, args.every), desc=f"distance {d}"):
            target = gt[t + d]
            known = target != VOID
            # the product's flow (params.yaml's flow settings) between t and t + d
            back = compute_flow(video.frames[[t, t + d]], cfg.flow).backward[0]
            carried = warp(gt[t], back, nearest=True)
            for c in range(len(names)):
                truth = (target == c) & known
                share[c] += truth.sum()
                guesses = (gt[t] == c, carried == c, best_shift(gt[t] == c, truth, args.reach))
                for k, guess in enumerate(guesses):
                    guess = guess & known
                    counts[c, k] += ((guess & truth).sum(), (guess | truth).sum())
        for c, name in enumerate(names):
            iou = counts[c, :, 0] / np.maximum(counts[c, :, 1], 1)
            rows.append({"distance": d, "class": name, "pixel_share": share[c] / share.sum(),
                         "unmoved": iou[0], "flow": iou[1], "best_shift": iou[2]})  # fmt: skip
    table = save_table(rows, Path(args.out), float_format="%.4f")
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
