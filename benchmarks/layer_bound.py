"""The fewest class-layer clicks that could lift a video's labels to a target mIoU.

Why: on CamVid 0016E5_15hz a thin class's label carried to the next frame scores far below 1
against that frame's truth, whatever carries it (``object_shift_ceiling.py``: pole IoU .63 by
the flow, .66 by each pole's best shift chosen with the truth). A frame's poles are then right
only where a person drew them on that frame, and each class layer adds about ``1 / N`` of its
class's IoU gap. This script prices that: from a starting per-class IoU ``q`` (the carried
ceiling one frame away, or the labels of a run's round), it buys the share of frames whose
layer of each class is drawn, cheapest IoU per click first (the click model's price of each
class's layer from nothing, the mean over every ``--every``-th frame of the ground truth), until
the mean IoU reaches each target. Optimistic: it charges nothing for the frames that make a
one-frame carry possible, and a drawn layer lifts only its own frame.

    .venv/bin/python benchmarks/layer_bound.py ../shared/datasets/camvid/clips/0016E5_15hz \
        --ceiling benchmarks/results/0016E5_15hz/object_shift_ceiling.csv \
        --run runs/fix_b15 --rounds 2 4 --manual 80107 \
        --csv benchmarks/results/0016E5_15hz/layer_bound.csv

Writes one row per (start, target): the layers bought (share of frames per class) and clicks.
``--strokes`` (``line_tool_price.py``'s CSV) lowers each class's layer price by what one-click
brush strokes save per point of IoU where they cover an object at ``--stroke-threshold``:

    .venv/bin/python benchmarks/layer_bound.py ../shared/datasets/camvid/clips/0016E5_15hz \
        --ceiling benchmarks/results/0016E5_15hz/object_shift_ceiling.csv \
        --run runs/fix_b15 --rounds 2 4 --manual 80107 \
        --strokes benchmarks/results/0016E5_15hz/line_tool_price.csv \
        --csv benchmarks/results/0016E5_15hz/layer_bound_strokes.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from probe_common import save_table

from hvsa.config import load_config
from hvsa.data.video import load_video
from hvsa.method.clicks import layer_clicks


def cheapest_layers(q: np.ndarray, price: np.ndarray, frames: int, target: float):
    """(share of frames with each class's layer drawn, clicks) that lifts mean(q) to ``target``
    at the fewest clicks, or (shares, inf) where even every layer falls short."""
    need = (target - q.mean()) * len(q)
    shares = np.zeros(len(q))
    clicks = 0.0
    for c in np.argsort(-(1 - q) / price):
        if need <= 1e-12:
            break
        gain = min(1 - q[c], need)
        shares[c] = gain / (1 - q[c])
        clicks += shares[c] * frames * price[c]
        need -= gain
    return shares, (clicks if need <= 1e-12 else float("inf"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--ceiling", required=True, help="object_shift_ceiling.py's CSV")
    ap.add_argument("--run", help="an `hvsa run` folder: start also from its rounds' labels")
    ap.add_argument("--rounds", nargs="*", type=int, default=[])
    ap.add_argument("--targets", nargs="+", type=float, default=[0.90, 0.95])
    ap.add_argument("--manual", type=float, required=True, help="clicks of full manual annotation")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--strokes", help="line_tool_price.py's CSV: a class's layers cost less by "
                    "its brush strokes' ratio of clicks per point lifted to its polygons'")
    ap.add_argument("--stroke-threshold", type=float, default=0.8,
                    help="with --strokes: the coverage at which a stroke replaces a polygon")
    ap.add_argument("--csv", required=True)
    args = ap.parse_args()
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    video = load_video(args.video, cfg.data.classes_file, cfg.data.void_id)
    gt, names, n = video.labels, list(video.classes.names), len(video.labels)
    price = np.array([np.mean([layer_clicks(gt[f], c, cfg.annotation.polygon_tolerance).total
                               for f in range(0, n, args.every)])
                      for c in range(len(names))])  # fmt: skip
    if args.strokes:  # strokes where they cover an object well, at their measured saving
        lines = pd.read_csv(args.strokes)
        lines = lines[(lines.tool == "brush stroke") & (lines.threshold == args.stroke_threshold)]
        ratio = lines.clicks_per_point_lifted / lines.polygons_clicks_per_point_lifted
        for name, r in zip(lines["class"], ratio, strict=True):
            price[names.index(name)] *= min(r, 1.0)
    ceiling = pd.read_csv(args.ceiling)
    one = ceiling[ceiling.distance == 1].set_index("class")
    carried = np.array([max(one.loc[c, "flow"], one.loc[c, "best_shift"]) for c in names])
    starts = [("carried one frame (best of flow and best shift)", 0.0, carried)]
    if args.run:
        rounds = pd.read_parquet(Path(args.run) / "rounds.parquet").set_index("round")
        for r in args.rounds:
            q = np.array([rounds.loc[r, f"iou_{c}"] for c in names])
            starts.append((f"round {r} of {args.run}", float(rounds.loc[r, "clicks_total"]), q))
    rows = []
    for start, spent, q in starts:
        for target in args.targets:
            shares, clicks = cheapest_layers(q, price, n, target)
            bought = ", ".join(f"{names[c]} {shares[c]:.2f}" for c in np.argsort(-shares)
                               if shares[c] > 0)  # fmt: skip
            rows.append({"start": start, "start_miou": q.mean(), "start_clicks": spent,
                         "target": target, "layers_share_of_frames": bought,
                         "layer_clicks": clicks,
                         "total_share_of_manual": (spent + clicks) / args.manual})  # fmt: skip
    table = save_table(rows, Path(args.csv), float_format="%.4f")
    print(pd.DataFrame({"class": names, "layer_price": price.round(1)}).to_string(index=False))
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
