"""What a line tool would save on thin classes' layers: thick polylines against polygons.

Why: a pole layer is the cheapest lift left to a run that has corrected its frames (RESULTS,
"Why 90 % at 6 % and 95 % at 12 % are out of reach on this clip"), and a pole looks like a
line. A line tool (click the points of a polyline, one more click to finish; the brush's width)
could draw a pole in 3 clicks where the polygon model charges its outline's vertices. This
script prices both on the ground truth: for every connected object of each thin class on every
``--every``-th frame, the polygon model's clicks (:func:`hvsa.method.clicks.layer_clicks` on
the object alone) and a line's — the object's centre line (the mean of its pixels across its
principal axis, one point per pixel along it) simplified by Douglas–Peucker at the polygon
tolerance, its vertices + 1 click, drawn at the object's mean width (area / centre-line
length) — and the line's IoU with the object. A person takes the line where it covers the object
at least as well as ``threshold`` (IoU) and costs fewer clicks, and draws the polygon elsewhere.
The same line painted in one drag of the brush is priced too, at the 1 click the app's page
counts for a stroke (a person would need a steady hand to follow a pole in one drag; the price
favours the brush; one stroke of one width an object, as modelled here, is what limits its IoU,
not the brush). Void pixels of the truth are nobody's: a line painted over them costs nothing.
Each row is one class, tool and threshold: the share of objects a line covers at that IoU, the
share drawn as lines (covered and cheaper than the polygon), the layer's clicks per frame and
the IoU of the layer handed in (a polygon hands in the object exactly, as the oracle does).
With ``--run`` and ``--round``, the frames are those of the every ``--every``-th that the round
had not labelled in full, and two last columns price what matters to a run: the class's IoU in
the round's labels on those frames (void aside), and clicks per point of it lifted on a frame
whose layer is drawn, by each tool and by polygons alone.

    .venv/bin/python benchmarks/line_tool_price.py ../shared/datasets/camvid/clips/0016E5_15hz \
        --run runs/fix_b15 --round 4 --thresholds 0 0.3 0.5 0.6 0.7 0.8 0.9 \
        --csv benchmarks/results/0016E5_15hz/line_tool_price.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from probe_common import iou, labelled_in_full, labelled_video, round_label_files, save_table

from hvsa.data.video import VOID
from hvsa.method.clicks import layer_clicks
from hvsa.rounds.state import LoopState


def centre_line(part: np.ndarray, tolerance: float) -> tuple[np.ndarray, float]:
    """The object's simplified centre line ((k, 2) int x, y vertices) and its mean width."""
    ys, xs = np.nonzero(part)
    pts = np.stack([xs, ys], 1).astype(float)
    mu = pts.mean(0)
    if len(pts) > 1:
        axis = np.linalg.svd(pts - mu, full_matrices=False)[2][0]
    else:
        axis = np.array([0.0, 1.0])
    normal = np.array([-axis[1], axis[0]])
    along = np.round((pts - mu) @ axis).astype(int)
    across = (pts - mu) @ normal
    steps = np.unique(along)
    offset = np.array([across[along == s].mean() for s in steps])
    line = mu + steps[:, None] * axis + offset[:, None] * normal
    simple = cv2.approxPolyDP(line.astype(np.float32)[:, None], tolerance, False)[:, 0]
    length = max(float(np.linalg.norm(np.diff(simple, axis=0), axis=1).sum()), 1.0)
    return np.round(simple).astype(np.int32), float(part.sum()) / length


def line_mask(shape: tuple[int, int], vertices: np.ndarray, width: float) -> np.ndarray:
    """The pixels a thick polyline of ``width`` px paints."""
    mask = np.zeros(shape, np.uint8)
    cv2.polylines(mask, [vertices[:, None]], False, 1, max(1, int(round(width))))
    return mask.astype(bool)


def objects(truth: np.ndarray, cls: int, tolerance: float) -> list[dict]:
    """Each connected object of ``cls`` in one frame: its pixels and both tools' price and
    hand-in."""
    n, comp = cv2.connectedComponents((truth == cls).astype(np.uint8), connectivity=8)
    rows = []
    for c in range(1, n):
        part = comp == c
        vertices, width = centre_line(part, tolerance)
        drawn = line_mask(truth.shape, vertices, width) & (truth != VOID)  # void is nobody's
        rows.append({
            "pixels": int(part.sum()),
            "polygon": layer_clicks(np.where(part, cls, 0).astype(np.uint8), cls,
                                    tolerance).total,
            "line": len(vertices) + 1,
            "line_iou": iou(drawn, part),
            "line_inter": int((drawn & part).sum()),
            "line_union": int((drawn | part).sum()),
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--classes", nargs="+", default=["pole", "sign_symbol", "pedestrian"])
    ap.add_argument("--thresholds", nargs="+", type=float, default=[0.5, 0.6, 0.7, 0.8, 0.9])
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--run", type=Path, help="an `hvsa run` folder, with --round")
    ap.add_argument("--round", type=int)
    ap.add_argument("--csv", type=Path, required=True)
    args = ap.parse_args()
    cfg, video = labelled_video(args.video, [])
    assert video.labels is not None
    names = list(video.classes.names)
    frames = list(range(0, len(video.labels), args.every))
    start = None
    if args.run is not None:  # the frames a layer could still lift: not labelled in full
        state = LoopState.load(args.run / f"round_{args.round:02d}" / "human.npz")
        full = labelled_in_full(state, cfg.annotation.whole_frame)
        frames = [f for f in frames if not full[f]]
        pngs = round_label_files(args.run, args.round)
        start = np.stack([cv2.imread(str(pngs[f]), cv2.IMREAD_UNCHANGED) for f in frames])
    truth = video.labels[frames]
    tolerance = cfg.annotation.polygon_tolerance
    known = truth != VOID
    rows = []
    for name in args.classes:
        cls = names.index(name)
        obj = pd.DataFrame([o for t in truth for o in objects(t, cls, tolerance)])
        if start is not None:  # the round's labels of the class on those frames, void aside
            q = iou((start == cls) & known, truth == cls)
        for tool, price in (("polyline", obj.line), ("brush stroke", pd.Series(1, obj.index))):
            for threshold in args.thresholds:
                line = (obj.line_iou >= threshold) & (price < obj.polygon)
                clicks = float(np.where(line, price, obj.polygon).sum()) / len(frames)
                inter = np.where(line, obj.line_inter, obj.pixels).sum()
                union = np.where(line, obj.line_union, obj.pixels).sum()
                row = {"class": name, "tool": tool, "threshold": threshold, "objects": len(obj),
                       "share_covered": float((obj.line_iou >= threshold).mean()),
                       "share_as_lines": float(line.mean()), "clicks_per_frame": clicks,
                       "polygons_only_clicks_per_frame": float(obj.polygon.sum()) / len(frames),
                       "layer_iou": float(inter / union)}  # fmt: skip
                if start is not None:
                    row["start_iou"] = q
                    lift = row["layer_iou"] - q
                    row["clicks_per_point_lifted"] = clicks / (100 * lift) if lift > 0 else np.inf
                    row["polygons_clicks_per_point_lifted"] = (
                        row["polygons_only_clicks_per_frame"] / (100 * (1 - q)))
                rows.append(row)
    table = save_table(rows, args.csv, float_format="%.4f")
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
