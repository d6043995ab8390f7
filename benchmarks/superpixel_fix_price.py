"""Would the app's superpixel fill fix a frame cheaper than the correction model's polygons?

Why: a frame corrected in the corrector's rounds still costs about half to three quarters of
drawing it (RESULTS, "Correcting instead of redrawing"), and its wrong regions are what the
polygons pay for. The app has a superpixel fill (one click paints a SLIC superpixel of the frame
with the chosen class) that the correction model does not use. This script prices it on a run's
labels: every ``--every``-th frame (from ``--every // 2``) that nobody labelled in full is taken
as a prefill (the labels of round ``--round``, what the app would show), reassigned as the model
does, and each wrong region the model redraws (:func:`hvsa.method.corrections.wrong_regions`,
the ones not left) is priced twice — its polygon (1 + vertices + crossings, the model's rule)
and the superpixels that fill it (those overlapping it whose true pixels are mostly its class,
one click each). A person takes the fill where it costs fewer clicks and hands in nearly as good
a region: what it leaves of the region wrong (pixels outside those superpixels) plus what it
breaks (right pixels of another class inside them) at most ``--slack`` of the region. One row
per superpixel count: the regions, their polygon clicks, how many the fill takes over and the
clicks it saves, the pixels it leaves wrong, and the median wrong region's size beside a
superpixel's, and how many regions (and their polygon clicks) are small: under four times
``annotation.leave_pixels``.

    .venv/bin/python benchmarks/superpixel_fix_price.py \
        ../shared/datasets/camvid/clips/0016E5_15hz \
        runs/fix_b15 --round 4 --superpixels 300 1500 5000 \
        --csv benchmarks/results/0016E5_15hz/superpixel_fix_price.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from probe_common import labelled_in_full, labelled_video, round_label_files, save_table

from hvsa.data.video import VOID
from hvsa.method.clicks import boundary_crossings
from hvsa.method.corrections import fix_vertices, reassign, wrong_regions
from hvsa.method.samples import superpixel_segments
from hvsa.rounds.state import LoopState


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("run", type=Path, help="an `hvsa run` folder (round_NN inside)")
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--superpixels", nargs="+", type=int, default=[300, 1500, 5000])
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--slack", type=float, default=0.25)
    ap.add_argument("--csv", type=Path, required=True)
    args = ap.parse_args()
    cfg, video = labelled_video(args.video, [])
    assert video.labels is not None
    state = LoopState.load(args.run / f"round_{args.round:02d}" / "human.npz")
    full = labelled_in_full(state, cfg.annotation.whole_frame)
    names = round_label_files(args.run, args.round)
    a = cfg.annotation
    frames = [f for f in range(args.every // 2, len(names), args.every) if not full[f]]
    rows = {n_sp: {"superpixels": n_sp, "frames": len(frames), "regions": 0, "polygon_clicks": 0,
                   "filled_regions": 0, "fill_clicks": 0, "their_polygon_clicks": 0,
                   "filled_pixels": 0, "fill_left_wrong": 0, "fill_broke": 0}
            for n_sp in args.superpixels}  # fmt: skip
    areas, prices = [], []
    for f in frames:
        prefill = cv2.imread(str(names[f]), cv2.IMREAD_UNCHANGED)
        truth = video.labels[f]
        known = truth != VOID
        everywhere = np.ones(truth.shape, bool)
        fixed, _ = reassign(prefill, truth, everywhere)
        # the regions the model redraws and their polygons' price, once for every superpixel count
        redrawn = [(w, 1 + fix_vertices(w.part, w.free, a.polygon_tolerance)
                    + boundary_crossings(w.part.astype(np.uint8)))
                   for w in wrong_regions(fixed, truth, everywhere, a.polygon_tolerance,
                                          a.leave_width, a.leave_pixels, a.leave_share)
                   if not w.left]  # fmt: skip
        areas += [int(w.part.sum()) for w, _ in redrawn]
        prices += [polygon for _, polygon in redrawn]
        for n_sp, row in rows.items():
            seg = superpixel_segments(video.frames[f], n_sp, cfg.samples.compactness)
            votes = np.bincount(seg[known] * 256 + truth[known], minlength=(seg.max() + 1) * 256)
            major = votes.reshape(-1, 256).argmax(1)
            for w, polygon in redrawn:
                area = int(w.part.sum())
                ids = np.unique(seg[w.part])
                ids = ids[major[ids] == w.cls]
                filled = np.isin(seg, ids)
                left = int((w.part & ~filled).sum())
                broke = int((filled & known & (truth != w.cls) & (fixed == truth)).sum())
                row["regions"] += 1
                row["polygon_clicks"] += polygon
                if 0 < len(ids) < polygon and left + broke <= args.slack * area:
                    row["filled_regions"] += 1
                    row["fill_clicks"] += len(ids)
                    row["their_polygon_clicks"] += polygon
                    row["filled_pixels"] += area
                    row["fill_left_wrong"] += left
                    row["fill_broke"] += broke
    small = np.asarray(areas) < 4 * a.leave_pixels
    for n_sp, row in rows.items():
        row["median_region_pixels"] = float(np.median(areas))
        row["superpixel_pixels"] = video.labels[0].size / n_sp
        row["small_regions"] = int(small.sum())
        row["small_regions_polygon_clicks"] = int(np.asarray(prices)[small].sum())
        row["clicks_saved"] = row["their_polygon_clicks"] - row["fill_clicks"]
        row["saved_share_of_polygon_clicks"] = row["clicks_saved"] / max(row["polygon_clicks"], 1)
        print(row, flush=True)
    save_table(list(rows.values()), args.csv, float_format="%.4f")


if __name__ == "__main__":
    main()
