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

import numpy as np
import pandas as pd
import torch
from probe_common import open_run, parse  # the sibling module (scripts run from here)

from hvsa.finetune import TrainingData, finetune
from hvsa.metrics import miou
from hvsa.motion import resize_flow, resize_mask
from hvsa.network import load_checkpoint
from hvsa.predict import predict
from hvsa.scaling import frames_to_tensor, labels_to_tensor, upsample_argmax, work_size
from hvsa.video import VOID


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--round", type=int, required=True)
        ap.add_argument("--steps", type=int, nargs="+", required=True, help="cumulative steps")
        ap.add_argument("--lrs", type=float, nargs="+", required=True)

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    work = work_size(video.size, cfg.model.scale)
    folder = args.run / f"round_{args.round:02d}"
    human = np.load(folder / "human.npz")["labels"]
    free = ~(human != VOID).reshape(len(human), -1).any(1)
    data = TrainingData(
        frames_to_tensor(video.frames, work), labels_to_tensor(human, work),
        torch.from_numpy(resize_flow(flow.forward, work)),
        torch.from_numpy(resize_mask(flow.valid_forward, work)),
    )  # fmt: skip
    device = torch.device("cpu")
    rows = []
    for lr in args.lrs:
        model, classes, _ = load_checkpoint(folder / "model.pt", device)
        ft = cfg.finetune.model_copy(update={"lr": lr})
        done, seconds = 0, 0.0
        for target in [0, *args.steps]:
            t0 = time.perf_counter()
            if target > done:
                ft = ft.model_copy(update={"steps": target - done})
                finetune(model, data, ft, device, seed=done, crop=cfg.model.train_crop)
                done = target
            seconds += time.perf_counter() - t0
            probs = predict(model, data.frames, cfg.output.batch_size, device).probs
            net = upsample_argmax(probs, video.size)
            value, _ = miou(video.labels[free], net[free], len(classes))
            rows.append({"round": args.round, "lr": lr, "extra_steps": done,
                         "train_seconds": round(seconds, 1),
                         "network_miou_unlabelled": value})  # fmt: skip
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
