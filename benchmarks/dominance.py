"""Is each round's label generator at least as good as plain propagation of the same labels?

For a finished ``hvsa benchmark`` folder, every round of every hvsa strategy run there: its
label mIoU beside the mIoU of plain propagation of exactly the human labels the round holds
(``propagate_same``, what new benchmark runs write into ``rounds.csv`` themselves), per class
too, and the distance of each frame to its nearest frame labelled in full.

    .venv/bin/python benchmarks/dominance.py ../shared/datasets/camvid/clips/0016E5_15hz \\
        runs/bench/default --csv benchmarks/results/0016E5_15hz/dominance.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hvsa.benchmark.runner import Bench, same_labels_propagation
from hvsa.config import load_config
from hvsa.data.video import load_video
from hvsa.method.network import load_checkpoint
from hvsa.rounds.state import LoopState


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("bench", type=Path, help="an `hvsa benchmark --out` folder")
    ap.add_argument("--csv", type=Path, required=True)
    args = ap.parse_args()
    cfg = load_config()
    video = load_video(args.video, cfg.data.classes_file, cfg.data.void_id)
    _, classes, _ = load_checkpoint(args.bench / "pretrained.pt", torch.device("cpu"))
    bench = Bench(video, classes, cfg, args.bench / "pretrained.pt", args.bench,
                  np.zeros(len(video)), torch.device("cpu"))  # fmt: skip
    rows = []
    for run in sorted((args.bench / "runs").iterdir()):
        rounds = sorted(run.glob("round_*"))
        same = same_labels_propagation(bench, rounds)
        for folder, value in zip(rounds, same, strict=True):
            m = json.loads((folder / "metrics.json").read_text())
            state = LoopState.load(folder / "human.npz")
            full = np.flatnonzero(state.annotated.reshape(len(video), -1).all(1))
            gap = (np.abs(np.arange(len(video))[:, None] - full[None]).min(1) if full.size
                   else np.full(len(video), len(video)))  # fmt: skip
            rows.append({"strategy": run.name, "round": m["round"], "clicks": m["clicks_total"],
                         "miou": m["miou"], "propagate_same": value,
                         "frames_in_full": len(full), "farthest_frame": int(gap.max()),
                         "mean_distance": float(gap.mean())})  # fmt: skip
    table = pd.DataFrame(rows)
    table["margin"] = table["miou"] - table["propagate_same"]
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
