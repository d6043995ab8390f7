"""How much should the network's vote count beside carried human labels?

Why: with whole frames labelled, hvsa's labels are almost entirely carried human labels
(``fusion.network_weight`` is 0.005, so the network decides only where no label reaches) — a
full-resolution network changed the benchmark curve by under half a point. This script takes
finished rounds of a benchmark run (their fine-tuned network and human labels), computes the
carried votes once, and fuses them with the network at several weights, scoring each against the
ground truth on the frames that hold no human label. It is a diagnosis on the target video, not a
tuning: the method must find its weight without ground truth.

    .venv/bin/python benchmarks/network_weight.py ../shared/datasets/camvid/clips/0016E5_15hz \
        runs/bench/0016E5_15hz_full/runs/hvsa-frame-coverage --rounds 2 4 --set model.scale=1.0 \
        --csv benchmarks/results/0016E5_15hz/network_weight.csv

``--powers`` and ``--sigmas`` also vary how a carried vote falls with distance
(``fusion.distance_power``) and chain error (``fusion.sigma``); the votes are carried once per
pair. ``--calibration`` also writes, per weight, what the round's calibration scores it by
without ground truth (``calibration_score``: the estimate's probes fused without their own
labels, the network's vote there its mirror image, ``calibrate.weight_scores``) and the same
with the network's own vote at the probes (``own_vote_score``, which it was fine-tuned on), at
params.yaml's guided radius and carried votes (the same on every ``--powers``/``--sigmas`` row).
"""

from __future__ import annotations

import argparse

import numpy as np
from probe_common import (  # the sibling module (scripts run from here)
    CPU,
    network_miou,
    open_round,
    open_run,
    parse,
    save_table,
    unlabelled,
)
from tqdm import tqdm

from hvsa.method.calibrate import weight_scores
from hvsa.method.fusion import carried_votes, fuse_frame
from hvsa.method.metrics import miou
from hvsa.method.predict import predict
from hvsa.rounds.steps import estimate_probes, unseen_votes

WEIGHTS = (0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--rounds", type=int, nargs="+", required=True)
        ap.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
        ap.add_argument("--powers", type=float, nargs="+", help="distance powers (default: cfg's)")
        ap.add_argument("--sigmas", type=float, nargs="+", help="chain sigmas (default: cfg's)")
        ap.add_argument("--calibration", action="store_true",
                        help="also the calibration's scores of each weight")  # fmt: skip

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    assert video.labels is not None
    rows = []
    for r in args.rounds:
        model, ctx, state = open_round(args.run, r, cfg, video, flow)
        probs = predict(model, ctx.frames_t, cfg.output.batch_size, CPU).probs
        human, free = state.human, unlabelled(state)
        n_cls, names = len(ctx.classes), ctx.classes.names
        labelled = int((~free).sum())
        scored: dict[float, tuple[float, float]] = {}
        if args.calibration:
            probes = estimate_probes(state, cfg, cfg.fusion.estimate_from)
            unseen = unseen_votes(model, ctx, probes, cfg, CPU)
            readings = weight_scores(probs, human, video.frames, flow, cfg.fusion,
                                     state.annotated, args.weights, unseen)  # fmt: skip
            for i, w in enumerate(args.weights):
                scored[w] = (float(readings[0, i]), float(readings[1, i]))
        rows.append({"round": r, "labelled": labelled, "weight": "network alone",
                     "miou_unlabelled": network_miou(model, ctx, state, cfg)})  # fmt: skip
        powers = args.powers or [cfg.fusion.distance_power]
        sigmas = args.sigmas or [cfg.fusion.sigma]
        for power, sigma in ((p, s) for p in powers for s in sigmas):
            shape = cfg.fusion.model_copy(update={"distance_power": power, "sigma": sigma})
            votes = [
                carried_votes(human, ~free, flow, t, n_cls, shape, video.frames, state.annotated)
                for t in tqdm(range(len(video)), desc=f"votes r{r} p{power} s{sigma}")
            ]
            for wgt in args.weights:
                c = shape.model_copy(update={"network_weight": wgt})
                out = np.stack(
                    [fuse_frame(probs[t], votes[t], video.frames[t], human[t], c).argmax(0)
                     for t in range(len(video))]
                ).astype(np.uint8)  # fmt: skip
                value, ious = miou(video.labels[free], out[free], n_cls)
                per_class = {f"iou_{n}": v for n, v in zip(names, ious, strict=True)}
                rows.append({"round": r, "labelled": labelled, "distance_power": power,
                             "sigma": sigma, "weight": wgt, "miou_unlabelled": value,
                             **per_class})  # fmt: skip
                if wgt in scored:
                    rows[-1] |= dict(zip(("calibration_score", "own_vote_score"), scored[wgt],
                                         strict=True))  # fmt: skip
                print(r, power, sigma, wgt, round(value, 4), scored.get(wgt), flush=True)
    table = save_table(rows, args.csv)
    shown = [c for c in ("round", "labelled", "distance_power", "sigma", "weight",
                         "miou_unlabelled", "calibration_score", "own_vote_score")
             if c in table]  # fmt: skip
    print(table[shown].to_string(index=False))


if __name__ == "__main__":
    main()
