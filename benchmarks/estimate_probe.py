"""Does the network's vote at the estimate's probes flatter the estimate, and does the probe's
mirror image take that away?

Why: a round estimates its labels' mIoU without ground truth from labelled frames fused
without their own labels (``hvsa.method.estimate``), but the network voting there was
fine-tuned on those very frames. For every round of finished ``hvsa run`` folders of a
labelled video this rebuilds the round's view from its network and human labels (as a
resumed run does) and writes the truth beside the estimate and its interval taken two ways —
with the network's own vote at the probes (``own``: both ends of the interval too) and as
rounds take them (``unseen``: the estimate and the interval's low end from each probe's mirror
image, its high end from the network's own vote) — the interval's low end read two ways (the
agreement bins no probe reaches at their class's average, as rounds read them, or as the bin
below, as the estimate reads them) and how often the network alone is right (pixels) on the
probes and on frames nobody labelled (every 4th), its own prediction and its mirror image's.

    .venv/bin/python benchmarks/estimate_probe.py ../shared/datasets/camvid/clips/0001TP \\
        runs/bn_tp --csv benchmarks/results/0001TP/estimate_probe.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from probe_common import CPU, labelled_video, open_round, unlabelled
from tqdm import tqdm

from hvsa.config import Config
from hvsa.data.scaling import upsample_argmax
from hvsa.data.video import VOID
from hvsa.method.estimate import interval
from hvsa.method.motion import load_or_compute_flow
from hvsa.method.predict import predict_mirrored
from hvsa.rounds.engine import (
    View,
    label_round,
    measure_round,
    predict_video,
    probes_of,
    round_summary,
)
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import VideoContext, estimate_probes


def right_share(probs: torch.Tensor, truth: np.ndarray, size: tuple[int, int]) -> float:
    """Share of labelled pixels (``truth`` (N,H,W), VOID not counted) the argmax of ``probs``
    (N,C,h,w) gets right at full size."""
    pred = upsample_argmax(probs, size)
    ok = truth != VOID
    return float((pred[ok] == truth[ok]).mean())


def low_readings(ctx: VideoContext, view: View, state: LoopState, cfg: Config) -> dict:
    """The interval's low end read two ways from the mirrored votes (``view.unseen``), the
    probes resampled as rounds resample them (``estimate.interval``): ``low_pessimistic`` with
    bins no probe reached at their class's average (as rounds take it), ``low_below`` with them
    at the bin below (the point estimate's reading), so that the share of the low end's
    distance from the truth that the unreached bins make is seen."""
    estimates = probes_of(ctx, view, state, cfg, cfg.fusion.estimate_from)
    if estimates is None:
        return {}
    summary, _ = round_summary(ctx, view, state)
    level = cfg.fusion.estimate_level
    return {name: interval(summary, estimates.probe_counts, level, low_below=below)[0]
            for name, below in (("low_pessimistic", False), ("low_below", True))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("runs", nargs="+", type=Path, help="finished `hvsa run` folders")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--csv", type=Path, required=True)
    args = ap.parse_args()
    cfg, video = labelled_video(args.video, args.set)
    rows = []
    for run in args.runs:
        flow = load_or_compute_flow(video.frames, cfg.flow, run / "cache")
        folders = sorted(run.glob("round_[0-9][0-9]"))
        for folder in tqdm(folders, desc=run.name, unit="round"):
            model, ctx, state = open_round(run, int(folder.name[-2:]), cfg, video, flow)
            probes = estimate_probes(state, cfg)
            if probes.size == 0:
                continue
            pred = predict_video(model, ctx, cfg, CPU)
            labels, view = label_round(ctx, pred, state, cfg, network=(model, CPU))
            row: dict = {"run": run.name, "video": video.name, "round": int(folder.name[-2:]),
                         "clicks": state.clicks_total}  # fmt: skip
            for name, unseen in (("own", None), ("unseen", view.unseen)):
                view.unseen, view.probed = unseen, None
                nothing = pd.DataFrame()
                m = measure_round(row["round"], nothing, state, labels, ctx, view, cfg, 0.0, {})
                row["miou"] = m.miou
                low, high = m.miou_interval or (np.nan, np.nan)
                row |= {f"estimate_{name}": m.miou_estimate, f"low_{name}": low,
                        f"high_{name}": high}  # fmt: skip
            row |= low_readings(ctx, view, state, cfg)
            free = np.flatnonzero(unlabelled(state))[::4]
            for name, idx in (("probes", probes), ("free", free)):
                pick = torch.from_numpy(idx)
                own = torch.stack([pred.probs[int(i)] for i in idx])
                mirrored = predict_mirrored(model, ctx.frames_t[pick], cfg.output.batch_size, CPU)
                row[f"net_{name}_own"] = right_share(own, video.labels[idx], ctx.full)
                row[f"net_{name}_mirrored"] = right_share(mirrored, video.labels[idx], ctx.full)
            rows.append(row)
            tqdm.write(str({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    table = pd.DataFrame(rows)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(args.csv, index=False)
    for name in ("low_pessimistic", "low_below"):
        below_truth = int((table[name] <= table["miou"]).sum())
        print(
            f"{name}: under the truth in {below_truth} of {len(table)} rounds, "
            f"{100 * (table['miou'] - table[name]).min():.1f} to "
            f"{100 * (table['miou'] - table[name]).max():.1f} points under it"
        )
    for name in ("own", "unseen"):
        err = 100 * (table[f"estimate_{name}"] - table["miou"])
        holds = (table[f"low_{name}"] <= table["miou"]) & (table["miou"] <= table[f"high_{name}"])
        print(f"{name}: {len(err)} rounds, estimate - truth {err.min():+.1f} to {err.max():+.1f} "
              f"points, mean absolute {err.abs().mean():.1f}, interval holds the truth in "
              f"{int(holds.sum())} of {len(holds)}")  # fmt: skip


if __name__ == "__main__":
    main()
