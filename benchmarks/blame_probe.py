"""Which made a round's labels worse: the round's new human labels or its fine-tuned network?

Why: a round that lowers the video's label mIoU although a human added labels (the benchmark's
summary flags it) has two suspects. The round's labels are fused from its human labels and its
network's vote; this script fuses them again with one of the two taken from the round before,
with the round engine's own ``label_round`` (the guided radius calibrated as a round does):

- ``labels_miou_before`` / ``labels_miou``: the round before and the round, as the run wrote them;
- ``earlier_network``: this round's human labels, the round before's network;
- ``earlier_labels``: the round before's human labels, this round's network.

If ``earlier_network`` falls as far as the round did, the new labels did it; if
``earlier_labels`` does, the network did. Every fusion here takes one network's vote, as runs
with ``fusion.vote_networks: 1`` wrote their labels; on a run with the default (the last two
networks' mean writes the labels) ``labels_miou_before`` and ``labels_miou`` are the run's, and
``vote_probe.py`` gives the one-network labels of the same rounds to compare the fusions with.
``--erode D`` also fuses both rounds with every
region of one class in the human labels shrunk by ``D`` px (``eroded_before``, ``eroded``): does
the drop come from the labels' borders (a superpixel named by its dominant class is wrong where
it straddles a border)? ``--labels-only`` skips the fusions and writes, per round, how many
pixels people labelled in it and the share of them the ground truth disagrees with (by true
class): what a round's new human labels hand in wrong. ``--region-odds V [V ...]`` fuses both
rounds again with each ``fusion.region_odds`` (0 = the labels certain) and every human label
named (``region_odds_V_before``, ``region_odds_V``): what weighing a superpixel's one-class label
as evidence does to the fall. ``--settings`` fuses each of the two rounds (its human labels and
its network) with each round's recorded fusion settings, the guided radius and the network
weight, held fixed (``settings_<labels round>_<settings round>``): did a change of the
calibrated settings lower the labels, or the new labels under the same settings? Every label
of a superpixel run was handed in as one class by the oracle, so a run saved before the marks
existed is marked in full.

    .venv/bin/python benchmarks/blame_probe.py ../shared/datasets/camvid/clips/0016E5_15hz \\
        runs/sp_e16/runs/hvsa-superpixel-paper --rounds 7 --erode 3 \\
        --csv benchmarks/results/0016E5_15hz/blame_probe.csv
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
from probe_common import CPU, open_round, open_run, parse, save_table

from hvsa.data.video import VOID
from hvsa.method.predict import predict
from hvsa.rounds.engine import label_round
from hvsa.rounds.steps import compose_labels, score


def eroded(human: np.ndarray, d: int) -> np.ndarray:
    """(N,h,w) human labels with each class's regions shrunk by ``d`` px (void elsewhere)."""
    kernel = np.ones((2 * d + 1, 2 * d + 1), np.uint8)
    out = np.full_like(human, VOID)
    for f, frame in enumerate(human):
        for c in np.unique(frame[frame != VOID]):
            out[f][cv2.erode((frame == c).astype(np.uint8), kernel).astype(bool)] = c
    return out


def new_label_errors(before: np.ndarray, after: np.ndarray, truth: np.ndarray,
                     names: tuple[str, ...]) -> dict:  # fmt: skip
    """The pixels labelled between two rounds' human labels (N,h,w) and how many of them the
    ground truth (N,h,w, void not counted) disagrees with, in all and by true class."""
    new = (after != VOID) & (before == VOID) & (truth != VOID)
    wrong = new & (after != truth)
    by_class = np.bincount(truth[wrong], minlength=len(names))[: len(names)]
    share = float(wrong.sum() / max(int(new.sum()), 1))
    return {"new_pixels": int(new.sum()), "new_wrong_share": share} | {
        f"wrong_{n}": int(k) for n, k in zip(names, by_class, strict=True)
    }


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--rounds", type=int, nargs="+", required=True,
                        help="the rounds to judge (each against the round before)")  # fmt: skip
        ap.add_argument("--labels-only", action="store_true",
                        help="only what each round's new human labels hand in wrong")
        ap.add_argument("--erode", type=int, default=0,
                        help="also fuse both rounds with the human labels' regions shrunk by D px")
        ap.add_argument("--settings", action="store_true",
                        help="also fuse both rounds under both rounds' recorded fusion settings")
        ap.add_argument("--region-odds", type=float, nargs="+", default=[],
                        help="also fuse both rounds with the labels named at these odds")

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    rows = []
    for r in args.rounds:
        if r < 1:
            raise SystemExit("a round is judged against the one before: give rounds >= 1")
        model_before, ctx, state_before = open_round(args.run, r - 1, cfg, video, flow)
        model, _, state = open_round(args.run, r, cfg, video, flow)
        errors = new_label_errors(state_before.human, state.human, video.labels, ctx.classes.names)
        if args.labels_only:
            rows.append({"round": r, "clicks": state.clicks_total} | errors)
            print(rows[-1], flush=True)
            save_table(rows, args.csv)
            continue
        net_before = predict(model_before, ctx.frames_t, cfg.output.batch_size, CPU)
        labels, _ = label_round(ctx, net_before, state, cfg, network=(model_before, CPU))
        earlier_network = score(video, labels, ctx.classes)[0]
        net = predict(model, ctx.frames_t, cfg.output.batch_size, CPU)
        labels, _ = label_round(ctx, net, state_before, cfg, network=(model, CPU))
        earlier_labels = score(video, labels, ctx.classes)[0]
        shrunk = {}
        if args.erode > 0:
            for key, st, pred in (("eroded_before", state_before, net_before),
                                  ("eroded", state, net)):  # fmt: skip
                st.human[...] = eroded(st.human, args.erode)
                labels, _ = label_round(ctx, pred, st, cfg)
                shrunk[key] = score(video, labels, ctx.classes)[0]
        for odds in args.region_odds:
            fusion = cfg.fusion.model_copy(update={"region_odds": odds or None})
            varied = cfg.model_copy(update={"fusion": fusion})
            for key, r_at, pred in (("before", r - 1, net_before), ("", r, net)):
                st = open_round(args.run, r_at, cfg, video, flow)[2]
                if st.named is None:  # saved before the marks: a superpixel run's, all named
                    st.named = st.human != VOID
                labels, _ = label_round(ctx, pred, st, varied)
                name = f"region_odds_{odds:g}" + (f"_{key}" if key else "")
                shrunk[name] = score(video, labels, ctx.classes)[0]
        metrics = [json.loads((args.run / f"round_{k:02d}" / "metrics.json").read_text())
                   for k in (r - 1, r)]  # fmt: skip
        if args.settings:
            recorded = [cfg.fusion.model_copy(update={
                "guided_radius": m.get("guided_radius") or cfg.fusion.guided_radius,
                "network_weight": m.get("network_weight") or cfg.fusion.network_weight,
            }) for m in metrics]  # fmt: skip
            for k_labels, pred in ((r - 1, net_before), (r, net)):
                st = open_round(args.run, k_labels, cfg, video, flow)[2]  # not eroded
                for k_set, fcfg in zip((r - 1, r), recorded, strict=True):
                    labels, _ = compose_labels(ctx, pred, st, cfg, fcfg)
                    shrunk[f"settings_{k_labels}_{k_set}"] = score(video, labels, ctx.classes)[0]
        rows.append({
            "round": r, "clicks": state.clicks_total,
            "labels_miou_before": metrics[0]["miou"], "labels_miou": metrics[1]["miou"],
            "earlier_network": earlier_network, "earlier_labels": earlier_labels,
        } | errors | ({"erode_px": args.erode} if args.erode else {}) | shrunk)  # fmt: skip
        print(rows[-1], flush=True)
        save_table(rows, args.csv)


if __name__ == "__main__":
    main()
