"""Would fills that the earlier belief contradicts do less harm kept to their own frame?

Per round r of a superpixel run: the round's new named pixels whose name loses against the
belief of round r-1 (another class more than ``1 + region_odds`` times as likely) are marked
doubtful; doubtful pixels are weighed in their own frame as any named pixel is, but are not
carried to other frames (they neither vote there nor end a chain). Doubt accumulates over the
rounds, and round r-1's belief is the variant's own (the run's samples and networks are kept).
Written per round (the table's rows of other runs, settings and odds are kept): the run's
mIoU and the probe's, the round's new named pixels, how many of them the truth disagrees with,
how many were doubted and how many of those were truly wrong.

The judge is not an option of the label generator (it was measured and not built,
RESULTS.md): this script stands it in by handing ``carried_votes`` the human labels without the
doubtful pixels, in fusion and in the calibration alike.

    .venv/bin/python benchmarks/doubt_probe.py runs/synthbench/v10 \\
        runs/synthbench/sp/runs/hvsa-superpixel-paper --rounds 9 --odds 3 \\
        --csv benchmarks/results/generated/doubt_probe.csv
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from probe_common import CPU, open_round, open_run, parse, save_table

import hvsa.method.calibrate as calibrate_mod
import hvsa.method.fusion as fusion_mod
from hvsa.data.video import VOID
from hvsa.method.predict import predict
from hvsa.rounds.engine import label_round
from hvsa.rounds.steps import score

LOCAL: dict[str, np.ndarray | None] = {"mask": None}
_orig = fusion_mod.carried_votes
# the labels last handed in and what is carried of them: a fusion asks for every frame of the
# same labels (held here, so an identity check cannot mistake a new array for them)
_last: list[tuple] = []


def carried_votes(human, labelled, flow, t, num_classes, cfg, frames=None, spoken=None,
                  memo=None, named=None):  # fmt: skip
    """``hvsa.method.fusion.carried_votes`` of the human labels less the doubtful pixels."""
    mask = LOCAL["mask"]
    if mask is None or not mask.any():
        return _orig(human, labelled, flow, t, num_classes, cfg, frames, spoken, memo, named)
    if not _last or _last[0][0] is not human:
        h2 = np.where(mask, VOID, human).astype(human.dtype)
        sp2 = None if spoken is None else spoken & ~mask
        nm2 = None if named is None else named & ~mask
        lab2 = (h2 != VOID).reshape(len(h2), -1).any(1)
        _last[:] = [(human, h2, sp2, nm2, lab2)]
    _, h2, sp2, nm2, lab2 = _last[0]
    return _orig(h2, lab2, flow, t, num_classes, cfg, frames, sp2, memo, nm2)


fusion_mod.carried_votes = carried_votes
calibrate_mod.carried_votes = carried_votes


def doubtful(belief: torch.Tensor, human: np.ndarray, new: np.ndarray, odds: float) -> np.ndarray:
    """(N,H,W) bool: new named pixels whose name loses against ``belief`` (N,C,h,w) by odds."""
    out = np.zeros(human.shape, bool)
    for t in np.flatnonzero(new.reshape(len(new), -1).any(1)):
        b = F.interpolate(belief[t : t + 1].float(), size=human.shape[1:], mode="bilinear",
                          align_corners=False)[0].numpy()  # fmt: skip
        ys, xs = np.nonzero(new[t])
        names = human[t, ys, xs].astype(np.intp)
        pix = b[:, ys, xs]
        p_named = pix[names, np.arange(len(names))]
        pix[names, np.arange(len(names))] = -1
        out[t, ys, xs] = pix.max(0) > (1 + odds) * p_named
    return out


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--rounds", type=int, required=True, help="last round")
        ap.add_argument("--odds", type=float, default=None, help="default: fusion.region_odds")

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    # the stand-in patches the host's label generator: on a GPU fusion would go to the device's
    # chain walker (hvsa.rounds.steps.fusion_device) and the probe would measure nothing
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"device": "cpu"})})
    odds = args.odds if args.odds is not None else cfg.fusion.region_odds
    mask = None
    belief = None
    human_before = None
    rows: list[dict] = []
    # the table gathers variants: rows of other runs, settings and odds are kept
    others: list[dict] = []
    if args.csv.is_file():
        kept = pd.read_csv(args.csv)
        mine = (
            (kept["strategy"] == args.run.name)
            & (kept["named_shadow"] == cfg.fusion.named_shadow)
            & (kept["doubt_odds"] == odds)
        )
        others = kept[~mine].to_dict("records")
    for r in range(0, args.rounds + 1):
        model, ctx, state = open_round(args.run, r, cfg, video, flow)
        if state.named is None:
            state.named = state.human != VOID
        if mask is None:
            mask = np.zeros(state.human.shape, bool)
        if r > 0 and belief is not None and human_before is not None:
            new = (state.human != VOID) & (human_before == VOID) & state.named
            doubt = doubtful(belief, state.human, new, odds)
            wrong_new = new & (state.human != video.labels) & (video.labels != VOID)
            mask |= doubt
        else:
            new = doubt = wrong_new = np.zeros(state.human.shape, bool)
        LOCAL["mask"] = mask
        human_before = state.human.copy()
        pred = predict(model, ctx.frames_t, cfg.output.batch_size, CPU)
        labels, view = label_round(ctx, pred, state, cfg)
        belief = view.belief.probs
        value, per_class = score(video, labels, ctx.classes)
        m = json.loads((args.run / f"round_{r:02d}" / "metrics.json").read_text())
        rows.append({"strategy": args.run.name, "named_shadow": cfg.fusion.named_shadow,
                     "doubt_odds": odds, "round": r, "clicks": state.clicks_total,
                     "run_miou": m["miou"],
                     "doubt_miou": value, "new_named": int(new.sum()),
                     "new_wrong": int(wrong_new.sum()), "doubtful": int(doubt.sum()),
                     "doubtful_wrong": int((doubt & wrong_new).sum()),
                     "doubtful_total": int(mask.sum())}
                    | {f"iou_{k}": v for k, v in per_class.items()})  # fmt: skip
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()
               if not k.startswith("iou_")}, flush=True)  # fmt: skip
        save_table(others + rows, args.csv)


if __name__ == "__main__":
    main()
