"""Does leaving labelled frames out pick the fusion setting that the truth would pick?

Why: ``hvsa.method.calibrate`` chooses the guided filter's radius each round by fusing some labelled
frames without their own labels and scoring them against what the human said — the only
ground truth a video being labelled has. This script checks that choice on finished rounds of
a benchmark run on a video with ground truth: for each fusion setting (a variant of
params.yaml's ``fusion`` section) it writes the leave-one-out score the loop would see and the
true mIoU of the labels on the frames nobody labelled.

    .venv/bin/python benchmarks/calibration_probe.py ../shared/datasets/camvid/clips/0016E5_15hz \\
        runs/bench/0016E5_15hz_full/runs/hvsa-frame-coverage --rounds 1 2 4 8 12 \\
        --set model.scale=1.0 --csv benchmarks/results/0016E5_15hz/calibration_probe.csv

``--variants`` takes fusion settings as ``key=value[,key=value]`` (default: guided_radius 0–3).
"""

from __future__ import annotations

import argparse

import numpy as np
import yaml
from probe_common import CPU, open_round, open_run, parse, save_table, unlabelled
from tqdm import tqdm

from hvsa.config import FusionConfig
from hvsa.method.calibrate import VOTE_FIELDS, leave_one_out_scores, probe_frames
from hvsa.method.fusion import carried_votes, fuse_frame
from hvsa.method.metrics import miou
from hvsa.method.predict import predict

DEFAULT_VARIANTS = [f"guided_radius={r}" for r in range(4)]


def variant(base: FusionConfig, text: str) -> FusionConfig:
    """``base`` with the ``key=value,…`` of ``text`` (values read as YAML)."""
    pairs = (item.split("=", 1) for item in text.split(","))
    return base.model_copy(update={k.strip(): yaml.safe_load(v) for k, v in pairs})


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--rounds", type=int, nargs="+", required=True)
        ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    assert video.labels is not None
    cfgs = [variant(cfg.fusion, v) for v in args.variants]
    rows = []
    for r in args.rounds:
        model, ctx, state = open_round(args.run, r, cfg, video, flow)
        probs = predict(model, ctx.frames_t, cfg.output.batch_size, CPU).probs
        human, free, n_cls = state.human, unlabelled(state), len(ctx.classes)
        # calibration_probes frames spread over the labelled ones (probe_frames; the committed
        # CSVs were measured so; the loop probes every labelled frame, calibrate.radius_probes);
        # where fewer frames are labelled, every labelled frame, to show what it would pick
        labelled = int((~free).sum())
        probes = probe_frames(human, min(cfg.fusion.calibration_probes, labelled))
        loo = leave_one_out_scores(probs, human, video.frames, flow, cfgs, state.annotated, probes)
        votes: dict[tuple, list[np.ndarray]] = {}
        for name, c, score in zip(args.variants, cfgs, loo, strict=True):
            key = tuple(getattr(c, f) for f in VOTE_FIELDS)
            if key not in votes:
                votes[key] = [
                    carried_votes(human, ~free, flow, t, n_cls, c, video.frames, state.annotated)
                    for t in tqdm(np.flatnonzero(free), desc=f"votes r{r}", leave=False)
                ]
            out = np.stack(
                [fuse_frame(probs[t], v, video.frames[t], human[t], c).argmax(0)
                 for t, v in zip(np.flatnonzero(free), votes[key], strict=True)]
            ).astype(np.uint8)  # fmt: skip
            truth = miou(video.labels[free], out, n_cls)[0]
            rows.append({"round": r, "labelled": labelled, "probes": len(probes), "variant": name,
                         "leave_one_out": score, "truth_unlabelled": truth})  # fmt: skip
            print(r, name, f"leave-one-out {score:.4f} truth {truth:.4f}", flush=True)
    table = save_table(rows, args.csv)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
