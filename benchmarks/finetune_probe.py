"""Is the fine-tuned network short of training? More steps on the same human labels.

Why: on 0001TP the network alone scores 42-49 % mIoU on the frames nobody labelled, whether 4
or 32 frames are labelled (``network_weight.py``), far below what the same architecture reaches
when trained to convergence on labelled frames (``../shared/FINDINGS.md``). This script takes a
finished round (its network and human labels), fine-tunes on, exactly as a round does (same
loss, pairs, crops, settings) for more steps at a few learning rates, and scores the network
alone on the unlabelled frames after each block of steps. A diagnosis, not a tuning.

    .venv/bin/python benchmarks/finetune_probe.py ../shared/datasets/camvid/clips/0001TP \
        runs/bench/0001TP_full/runs/hvsa-frame-coverage --round 8 --steps 60 240 480 \
        --lrs 0.0005 0.002 --set model.scale=1.0 --set 'model.train_crop=[180,240]' \
        --csv benchmarks/results/0001TP/finetune_probe.csv
"""

from __future__ import annotations

import argparse
import time

from probe_common import (  # the sibling module (scripts run from here)
    CPU,
    network_miou,
    open_round,
    open_run,
    parse,
    save_table,
)

from hvsa.rounds.steps import finetune_model


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--round", type=int, required=True)
        ap.add_argument("--steps", type=int, nargs="+", required=True, help="cumulative steps")
        ap.add_argument("--lrs", type=float, nargs="+", required=True)

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    rows = []
    for lr in args.lrs:
        model, ctx, state = open_round(args.run, args.round, cfg, video, flow)
        done, seconds = 0, 0.0
        for target in [0, *args.steps]:
            t0 = time.perf_counter()
            if target > done:
                ft = cfg.finetune.model_copy(update={"lr": lr, "steps": target - done})
                step_cfg = cfg.model_copy(update={"finetune": ft})
                finetune_model(model, ctx, state, step_cfg, CPU, round_no=done)  # seed offset
                done = target
            seconds += time.perf_counter() - t0
            value = network_miou(model, ctx, state, cfg)
            rows.append({"round": args.round, "lr": lr, "extra_steps": done,
                         "train_seconds": round(seconds, 1),
                         "network_miou_unlabelled": value})  # fmt: skip
            print(rows[-1], flush=True)
    print(save_table(rows, args.csv).to_string(index=False))


if __name__ == "__main__":
    main()
