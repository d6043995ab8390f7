"""Does a round's fine-tuning make the network worse on frames nobody labelled?

Why: at 1 Hz the network decides most pixels of the fused labels, and on CamVid 0006R0 two rounds
of `auto` lowered the labels' mIoU after two more frames were labelled: the network alone fell
on the unlabelled frames (pavement 50 → 42 % IoU) while the carried votes rose. This script
takes a starting network, labels the video's frames with their ground truth a few at a time in
one fixed order (farthest from any labelled frame first, as evenly spaced keyframes), and after
each round fine-tunes exactly as a round does (``hvsa.rounds.steps.finetune_model``) under each
variant of the settings, scoring the network alone on a fixed set of frames that are never
labelled. Every variant sees the same frames in the same order, so a drop is the fine-tuning's
doing. A diagnosis, not a tuning: the settings it compares are general (learning-rate schedule,
weight averaging), none is fitted to the clip.

    .venv/bin/python benchmarks/drift_probe.py ../shared/datasets/camvid/clips/0006R0 \\
        --model runs/b06/bench/pretrained.pt --cache runs/b06/bench/cache --rounds 12 \\
        --variant constant= --variant cosine=finetune.schedule=cosine \\
        --csv benchmarks/results/0006R0/drift_probe.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from probe_common import (  # the sibling module (scripts run from here)
    CPU,
    labelled_video,
    save_table,
)
from tqdm import tqdm

from hvsa.benchmark.report import SLACK
from hvsa.config import load_config, parse_set_option
from hvsa.data.scaling import upsample_argmax
from hvsa.data.video import VOID
from hvsa.method.metrics import miou
from hvsa.method.motion import load_or_compute_flow
from hvsa.method.network import load_checkpoint
from hvsa.method.predict import predict
from hvsa.method.samples import build_samples
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import VideoContext, finetune_model


def label_order(n: int, held_out: np.ndarray) -> list[int]:
    """Frames outside ``held_out`` in greedy farthest-from-any-labelled order (first: the
    middle), the order evenly spaced keyframes would be added in."""
    pool = [f for f in range(n) if not held_out[f]]
    order: list[int] = []
    dist = np.full(n, np.inf)
    while pool:
        if not order:
            pick = min(pool, key=lambda f: abs(f - (n - 1) / 2))
        else:
            pick = max(pool, key=lambda f: (dist[f], -f))
        order.append(pick)
        pool.remove(pick)
        dist = np.minimum(dist, np.abs(np.arange(n) - pick))
    return order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--model", type=Path, required=True, help="the starting network")
    ap.add_argument("--cache", type=Path, required=True, help="flow cache folder")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--per-round", type=int, default=2, help="frames labelled a round")
    ap.add_argument("--held-out-every", type=int, default=4, help="every k-th frame is scored")
    ap.add_argument(
        "--variant", action="append", required=True,
        help="NAME=key=value,key=value (empty after = : params.yaml as it is)",
    )  # fmt: skip
    ap.add_argument("--set", action="append", default=[], help="for every variant")
    ap.add_argument("--csv", type=Path, required=True)
    args = ap.parse_args()

    base, video = labelled_video(args.video, args.set)
    flow = load_or_compute_flow(video.frames, base.flow, args.cache)
    n = len(video)
    held_out = np.arange(n) % args.held_out_every == 1
    order = label_order(n, held_out)
    rows = []
    for spec in args.variant:
        name, _, sets = spec.partition("=")
        cfg = load_config(None, parse_set_option([*args.set, *filter(None, sets.split(","))]))
        model, classes, _ = load_checkpoint(args.model, CPU)
        samples = build_samples(video.frames, cfg.samples, "frame")
        ctx = VideoContext.build(video, classes, cfg, flow, samples)
        human = np.full(video.labels.shape, VOID, np.uint8)
        none = np.zeros(human.shape, bool)
        state = LoopState(human, none, np.zeros(human.shape, np.int32), set())
        eval_idx = np.flatnonzero(held_out)
        prev = None
        for r in tqdm(range(args.rounds + 1), desc=name, unit="round"):
            t0 = time.perf_counter()
            if r:
                for f in order[(r - 1) * args.per_round : r * args.per_round]:
                    state.human[f] = video.labels[f]
                    state.annotated[f] = True
                finetune_model(model, ctx, state, cfg, CPU, round_no=r)
            seconds = time.perf_counter() - t0
            probs = predict(model, ctx.frames_t[eval_idx], cfg.output.batch_size, CPU).probs
            probs = probs.float()
            net = upsample_argmax(probs, ctx.full)
            value, per_class = miou(video.labels[eval_idx], net, len(classes))
            # the network's vote as the mean of this and the previous round's predictions
            both = probs if prev is None else (probs + prev) / 2
            pair = miou(video.labels[eval_idx], upsample_argmax(both, ctx.full), len(classes))[0]
            prev = probs
            ious = {f"iou_{c}": v for c, v in zip(classes.names, per_class, strict=True)}
            rows.append({"variant": name, "settings": sets, "round": r,
                         "labelled_frames": min(r * args.per_round, len(order)),
                         "network_miou_held_out": value,
                         "with_previous_round": pair, "train_seconds": round(seconds, 1),
                         **ious})  # fmt: skip
            save_table(rows, args.csv)
    table = save_table(rows, args.csv)
    print(summarise(table).to_string(index=False))


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the held-out mIoU at the end, and the rounds that lowered it by more than
    the benchmark's :data:`SLACK`."""
    out = []
    for name, t in table.groupby("variant", sort=False):
        m = t.sort_values("round")["network_miou_held_out"].to_numpy()
        step = np.diff(m)
        out.append({"variant": name, "final": m[-1], "mean_over_rounds": m[1:].mean(),
                    "drops_over_slack": int((step < -SLACK).sum()),
                    "worst_drop": float(step.min()) if len(step) else 0.0})  # fmt: skip
    return pd.DataFrame(out)


if __name__ == "__main__":
    main()
