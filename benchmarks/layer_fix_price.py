"""What fixing each class layer a run asked for would cost, against drawing it from nothing.

Why: the corrector (``annotation.annotator: corrector``) draws a class layer from nothing when
fixing its prefill would cost as much; on CamVid 0016E5_15hz it did so for nearly every pole
layer. This script shows why, layer by layer: the prefill's IoU with the truth, how many
pieces the prefill shows against the true objects, and the fix's clicks by tool
(:func:`hvsa.method.corrections.correct_layer` with ``scratch=False``) beside the price of drawing.

    .venv/bin/python benchmarks/layer_fix_price.py ../shared/datasets/camvid/clips/0016E5_15hz \
        runs/fix_b15 --rounds 5 6 --csv benchmarks/results/0016E5_15hz/layer_fix_price.csv

The prefill of round r is the labels the run wrote in round r − 1 (what the app shows).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from probe_common import iou, round_label_files, save_table

from hvsa.config import load_config
from hvsa.data.video import load_video
from hvsa.method.clicks import layer_clicks
from hvsa.method.corrections import correct_layer


def pieces(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("run")
    ap.add_argument("--rounds", nargs="+", type=int, required=True)
    ap.add_argument("--csv", required=True)
    args = ap.parse_args()
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    a = cfg.annotation
    video = load_video(args.video, cfg.data.classes_file, cfg.data.void_id)
    run, rows = Path(args.run), []
    for r in args.rounds:
        sel = pd.read_parquet(run / f"round_{r:02d}" / "selected.parquet")
        names = round_label_files(run, r - 1)  # what the app showed in round r
        for frame, kind, cls in zip(sel["frame"], sel["kind"], sel["class_id"], strict=True):
            if kind != "layer":
                continue
            prefill = cv2.imread(str(names[frame]), cv2.IMREAD_UNCHANGED)
            truth = video.labels[frame]
            fix = correct_layer(prefill, truth, cls, a.polygon_tolerance, a.leave_width,
                                a.leave_pixels, a.leave_share, scratch=False)  # fmt: skip
            shown, true = prefill == cls, truth == cls
            rows.append({
                "round": r, "frame": int(frame), "class": video.classes.names[cls],
                "prefill_iou": iou(shown, true),
                "true_objects": pieces(true), "prefill_pieces": pieces(shown),
                "draw_clicks": layer_clicks(truth, cls, a.polygon_tolerance).total,
                "fix_clicks": fix.total, "reassign": fix.reassigned, "polygons": fix.redrawn,
                "vertices": fix.vertices, "crossings": fix.crossings,
                "left_pixels": fix.left_pixels,
            })  # fmt: skip
    table = save_table(rows, Path(args.csv), float_format="%.4f")
    cheaper = table.assign(cheaper_to_fix=table["fix_clicks"] < table["draw_clicks"])
    summary = cheaper.groupby(["round", "class"]).agg(
        layers=("frame", "size"), prefill_iou=("prefill_iou", "mean"),
        true_objects=("true_objects", "mean"), prefill_pieces=("prefill_pieces", "mean"),
        draw=("draw_clicks", "sum"), fix=("fix_clicks", "sum"), polygons=("polygons", "sum"),
        vertices=("vertices", "sum"), cheaper_to_fix=("cheaper_to_fix", "sum"),
    )  # fmt: skip
    print(summary.to_string(float_format="%.2f"))


if __name__ == "__main__":
    main()
