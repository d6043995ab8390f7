"""Would the labels stop dropping if the network's vote were the mean of its last two versions?

Why: on CamVid 0006R0 (1 Hz) the network decides most pixels of the fused labels, and a round's
fine-tuning can swing one class by 10 points IoU on frames nobody labelled (``drift_probe.py``),
lowering the labels although a human added some. The mean of the predictions of the last two
networks (the last two that differ: a round of class layers keeps its network) kept the
network's mean and rose in every round after the first. This script takes a finished benchmark
run and makes every round's labels twice with the round engine's own ``label_round`` (the guided
radius calibrated as the round did): from the round's network, as a run with
``fusion.vote_networks: 1`` did, and from that mean, as a run with the default does (to the
guided radius, which the mean calibrates here and the current network in a run); both scored
on every frame against the ground truth, as the benchmark scores a round.

    .venv/bin/python benchmarks/vote_probe.py ../shared/datasets/camvid/clips/0006R0 \\
        runs/b06/target/runs/auto --rounds 16 --csv benchmarks/results/0006R0/vote_probe.csv

``--from-round R`` labels rounds R.. only (the rounds before R are read for their networks
alone, back to the latest one that differs from round R's): a round's labels take seconds to
minutes, and a drop is judged on the rounds around it.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from probe_common import CPU, open_round, open_run, parse, save_table
from tqdm import tqdm

from hvsa.benchmark.report import SLACK
from hvsa.method.predict import Prediction, predict
from hvsa.rounds.engine import label_round
from hvsa.rounds.steps import score


def _sha(run: Path, r: int) -> str:
    """A digest of round ``r``'s network weights. Not of the file: a round of class layers
    keeps its network but writes it with its own round number beside the weights."""
    state = torch.load(run / f"round_{r:02d}" / "model.pt", map_location="cpu", weights_only=True)
    digest = hashlib.sha256()
    for name, tensor in sorted(state["state_dict"].items()):
        digest.update(name.encode())
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _first_read(run: Path, first: int) -> int:
    """The first round to read for labelling from round ``first`` on: the latest round before
    it with another network than round ``first``'s (a round of class layers keeps its network),
    so that the earlier network of the vote is the one the full probe would take."""
    if first <= 0 or not (run / f"round_{first:02d}" / "model.pt").is_file():
        return max(0, first - 1)
    r = first - 1
    while r > 0 and _sha(run, r) == _sha(run, first):
        r -= 1
    return r


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--rounds", type=int, required=True, help="rounds 1..this (or fewer)")
        ap.add_argument("--from-round", type=int, default=0,
                        help="label rounds from this one on (rounds before it only predict)")

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    rows, earlier, current, digest = [], None, None, None
    for r in tqdm(range(_first_read(args.run, args.from_round), args.rounds + 1), desc="rounds",
                  unit="round"):  # fmt: skip
        path = args.run / f"round_{r:02d}" / "model.pt"
        if not path.is_file():  # the run stopped earlier (its target reached)
            break
        model, ctx, state = open_round(args.run, r, cfg, video, flow)
        new = _sha(args.run, r)
        if new != digest:  # a new network: the one before becomes the earlier one
            earlier = current
            current = predict(model, ctx.frames_t, cfg.output.batch_size, CPU)
            digest = new
        assert current is not None
        if r < args.from_round:  # only the earlier network of the first round labelled
            continue
        labels, _ = label_round(ctx, current, state, cfg)
        alone = score(video, labels, ctx.classes)[0]
        both = alone
        if earlier is not None:
            mean = (current.probs.float() + earlier.probs.float()) / 2
            vote = Prediction(mean.to(current.probs.dtype), current.features)
            labels, _ = label_round(ctx, vote, state, cfg)
            both = score(video, labels, ctx.classes)[0]
        rows.append({"round": r, "clicks": state.clicks_total, "labels_miou": alone,
                     "labels_miou_two_networks": both})  # fmt: skip
        print(rows[-1], flush=True)
        save_table(rows, args.csv)
    table = save_table(rows, args.csv)
    for column in ("labels_miou", "labels_miou_two_networks"):
        step = table[column].diff()
        drops = table["round"][step < -SLACK].tolist()
        print(f"{column}: rounds lower than the one before by > {100 * SLACK:.1f} points: {drops}")


if __name__ == "__main__":
    main()
