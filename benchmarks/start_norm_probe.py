"""What does a network that knows nothing learn from a few labelled frames, with and without
BatchNorm statistics taken from the video's own frames?

Why: fine-tuning keeps BatchNorm frozen (``finetune.freeze_bn``), so a network built with
``weights=None`` normalises every layer with mean 0 and variance 1 unless something sets them.
This script takes a finished round of a run from nothing (its human labels only), builds the
seeded fresh network twice as a run from nothing builds it (``network.fresh_network``), once
as built and once after ``normalise_on`` over ``model.start_frames`` of the video's frames,
fine-tunes each exactly as the rounds do (same loss, pairs, crops, settings) for the given
steps in blocks of ``finetune.steps``, and scores the network alone on the frames nobody
labelled. A diagnosis, not a tuning.

    .venv/bin/python benchmarks/start_norm_probe.py ../shared/datasets/camvid/clips/0016E5_15hz \\
        runs/fin_15hz --round 4 --steps 240 --csv benchmarks/results/0016E5_15hz/start_norm.csv
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

from hvsa.method.network import fresh_network
from hvsa.rounds.rules import start_frames
from hvsa.rounds.steps import finetune_model


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--round", type=int, required=True)
        ap.add_argument("--steps", type=int, required=True, help="fine-tuning steps in all")

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    _, ctx, state = open_round(args.run, args.round, cfg, video, flow)
    rows = []
    for norm in (False, True):
        t0 = time.perf_counter()  # the start as a run from nothing makes it (rules.start_network)
        frames = start_frames([video], cfg) if norm else None
        model = fresh_network(cfg.model.arch, len(ctx.classes), cfg.pretrain.seed, frames,
                              cfg.output.batch_size)  # fmt: skip
        start_s = time.perf_counter() - t0
        for block in range(args.steps // cfg.finetune.steps):
            finetune_model(model, ctx, state, cfg, CPU, round_no=block)
        rows.append({"round": args.round, "batchnorm": "video frames" if norm else "mean 0, var 1",
                     "start_seconds": round(start_s, 1), "steps": args.steps,
                     "network_miou_unlabelled": network_miou(model, ctx, state, cfg)})  # fmt: skip
        print(rows[-1], flush=True)
    print(save_table(rows, args.csv).to_string(index=False))


if __name__ == "__main__":
    main()
