"""The label generator's seconds a frame on the host (numpy + OpenCV) and on a torch device.

Generates a video (``hvsa.data.synth``), computes its flow, labels it as a round of `auto`
would have (whole keyframes every ``--every`` frames, plus 32 px rectangles on the frames
between), and fuses the whole video with a uniform network once per kernel: ``host`` (what a
CPU-only machine runs), ``torch-cpu`` (the device kernel on the CPU, its reference) and
``cuda`` when a GPU is present (what ``model.device: auto`` then runs). Records the seconds, the
seconds a frame, the share of labels equal to the host's and the labels' mIoU against the
generated truth.

    .venv/bin/python benchmarks/fusion_speed.py --sizes 60x360x480 --csv \\
        benchmarks/results/fusion_speed.csv

Not a test: a 720p video takes minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scale import machine  # benchmarks/scale.py: the same machine column

from hvsa.config import load_config
from hvsa.data.synth import CLASSES, generate
from hvsa.data.video import VOID
from hvsa.method.fusion import fuse
from hvsa.method.metrics import miou
from hvsa.method.motion import compute_flow

PARAMS = Path(__file__).resolve().parents[1] / "src" / "hvsa" / "params.yaml"
COLUMNS = ["frames", "height", "width", "kernel", "seconds", "s_per_frame", "same_labels",
           "miou", "machine", "measured"]  # fmt: skip


def labels_of_a_round(labels: np.ndarray, every: int, seed: int = 0) -> np.ndarray:
    """Whole keyframes every ``every`` frames and two 32 px rectangles on every other frame."""
    rng = np.random.default_rng(seed)
    human = np.full_like(labels, VOID)
    n, h, w = labels.shape
    for k in range(n):
        if k % every == 0 or k == n - 1:
            human[k] = labels[k]
        else:
            for _ in range(2):
                r, c = rng.integers(0, h - 32), rng.integers(0, w - 32)
                human[k, r : r + 32, c : c + 32] = labels[k, r : r + 32, c : c + 32]
    return human


def measure(size: str, every: int, kernels: list[str]) -> list[dict]:
    n, h, w = (int(v) for v in size.split("x"))
    cfg = load_config(PARAMS)
    frames, truth, _ = generate(n, h, w, seed=5)
    flow = compute_flow(frames, cfg.flow)
    human = labels_of_a_round(truth, every)
    c = len(CLASSES)
    net = torch.full((n, c, h // 2, w // 2), 1.0 / c)
    rows, host = [], None
    for kernel in kernels:
        device = None if kernel == "host" else torch.device(kernel.removeprefix("torch-"))
        start = time.perf_counter()
        labels, _ = fuse(net, human, frames, flow, cfg.fusion, human != VOID, device=device)
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        host = labels if kernel == "host" else host
        same = float((labels == host).mean()) if host is not None else float("nan")
        rows.append({
            "frames": n, "height": h, "width": w, "kernel": kernel, "seconds": round(seconds, 2),
            "s_per_frame": round(seconds / n, 4), "same_labels": round(same, 5),
            "miou": round(miou(truth, labels, c)[0], 4), "machine": machine(),
            "measured": time.strftime("%Y-%m-%d"),
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["60x360x480"])
    parser.add_argument("--every", type=int, default=10, help="a whole keyframe every N frames")
    parser.add_argument("--kernels", nargs="+", default=None,
                        help="host, torch-cpu, cuda (default: host, torch-cpu, and cuda if any)")
    parser.add_argument("--csv", type=Path, required=True)
    args = parser.parse_args()
    gpu = ["cuda"] if torch.cuda.is_available() else []
    kernels = args.kernels or ["host", "torch-cpu", *gpu]
    old = pd.read_csv(args.csv) if args.csv.is_file() else pd.DataFrame(columns=COLUMNS)
    for size in args.sizes:
        new = pd.DataFrame(measure(size, args.every, kernels))
        key = ["frames", "height", "width", "kernel", "machine"]
        old = old[~old.set_index(key).index.isin(new.set_index(key).index)]
        old = pd.concat([old, new], ignore_index=True).reindex(columns=COLUMNS)
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        old.to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
