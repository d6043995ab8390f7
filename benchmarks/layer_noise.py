"""How much do class layers lose when the human draws them less well than the oracle?

Why: the oracle draws a class layer exactly, and a layer is trusted both ways — its class is
certain where drawn and impossible elsewhere in the frame. A human asked for "all the poles"
misses a far-away pole now and then, and traces a border a pixel in or out. This script takes
finished rounds of a benchmark run with layers, spoils the layers in such ways, writes the
labels again as the loop would (same network, same calibrated fusion) and scores them on every
frame against the truth:

    .venv/bin/python benchmarks/layer_noise.py ../shared/datasets/camvid/clips/0016E5_15hz \\
        runs/bench/0016E5_15hz_calib/runs/hvsa-frame-coverage-b2-layers --rounds 6 11 \\
        --set model.scale=1.0 --csv benchmarks/results/0016E5_15hz/layer_noise.csv

Spoilings: ``exact`` (as drawn), ``miss<N>`` (every region under N pixels left out, its class
still declared complete), ``inside1`` / ``outside1`` (every region traced one pixel inside /
outside its border).
"""

from __future__ import annotations

import argparse
import copy

import cv2
import numpy as np
from probe_common import CPU, open_round, open_run, parse, save_table

from hvsa.data.video import VOID
from hvsa.method.metrics import miou
from hvsa.method.predict import predict
from hvsa.rounds.steps import compose_labels, fusion_settings

CROSS = np.ones((3, 3), np.uint8)


def spoil(layers: np.ndarray, how: str) -> np.ndarray:
    """A copy of the (N,H,W) layer map as a less careful annotator would have drawn it."""
    out = np.full_like(layers, VOID)
    for f, frame in enumerate(layers):
        for c in np.unique(frame[frame != VOID]):
            mask = (frame == c).astype(np.uint8)
            if how.startswith("miss"):
                n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
                keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= int(how[4:]))
                mask = np.isin(comp, keep[keep > 0]).astype(np.uint8)
            elif how == "inside1":
                mask = cv2.erode(mask, CROSS)
            elif how == "outside1":
                mask = cv2.dilate(mask, CROSS)
            elif how != "exact":
                raise SystemExit(f"unknown spoiling {how!r}")
            out[f][(mask > 0) & (out[f] == VOID)] = c
    return out


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--rounds", type=int, nargs="+", required=True)
        ap.add_argument("--spoil", nargs="+", default=["exact", "miss20", "miss100", "inside1",
                                                        "outside1"])  # fmt: skip

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    assert video.labels is not None
    names = video.classes.names if video.classes is not None else None
    rows = []
    for r in args.rounds:
        model, ctx, state = open_round(args.run, r, cfg, video, flow)
        pred = predict(model, ctx.frames_t, cfg.output.batch_size, CPU)
        fcfg = fusion_settings(ctx, pred, state, cfg)
        layered = sorted({c for _, c in state.complete})
        for how in args.spoil:
            spoiled = copy.copy(state)
            spoiled.layers = spoil(state.layers, how)
            labels, _ = compose_labels(ctx, pred, spoiled, cfg, fcfg)
            value, ious = miou(video.labels, labels, len(ctx.classes))
            row = {"round": r, "clicks": state.clicks_total, "layers": len(state.complete),
                   "spoiling": how, "miou": value}  # fmt: skip
            row |= {f"iou_{names[c] if names else c}": ious[c] for c in layered}
            rows.append(row)
            print(r, how, f"mIoU {value:.4f}", flush=True)
    table = save_table(rows, args.csv)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
