"""Where a round's label generation spends its seconds: cProfile of one round's fusion.

Takes a finished benchmark run, fuses round ``R``'s human labels as the round did (its network's
prediction for the belief, the mean of its and the network before it for the labels (the
network of the round before the last one that fine-tuned, as the run chose it), the guided
radius and network weight the round calibrated, read from its ``metrics.json``) and writes the
cumulative seconds of the functions that matter: walking the flow chains (``carried_votes``:
``step`` moves the points, ``_vote`` samples the labelled frames), reading the flow, and
fusing each frame (``fuse_frame``, once per vote). Why: with labels in pieces on every frame no
chain ends early, and a round's labels take most of its time; this says which part to make
faster.

    .venv/bin/python benchmarks/fusion_profile.py ../shared/datasets/camvid/clips/0016E5_15hz \\
        runs/spr/runs/hvsa-superpixel-random --round 5 \\
        --csv benchmarks/results/0016E5_15hz/superpixel_random_2026-12-06/fusion_profile.csv

Not a test: minutes on 2 cores.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import time
from pathlib import Path

from probe_common import CPU, open_round, open_run, parse, save_table
from scale import machine  # benchmarks/scale.py: the same machine column

from hvsa.method.fusion import fuse
from hvsa.method.predict import mean_prediction, predict
from hvsa.rounds.engine import earlier_network_round

# (function name, file tail) → the label in the table
WATCHED = {
    ("fuse", "fusion.py"): "fuse (all)",
    ("carried_votes", "fusion.py"): "carried_votes: walking the chains",
    ("step", "propagate.py"): "step: moving the points one frame",
    ("_vote", "fusion.py"): "_vote: sampling a labelled frame",
    ("_reaching", "fusion.py"): "_reaching: the points that land on a label",
    ("_compact", "fusion.py"): "_compact: dropping the points that can no longer vote",
    ("frame", "chunks.py"): "reading a flow frame (float16 to float32)",
    ("fuse_frame", "fusion.py"): "fuse_frame: network vote, guided filter (both votes)",
}


def _metrics(run: Path, r: int) -> dict:
    """Round ``r``'s ``metrics.json`` (its ``timings`` hold ``finetune`` where it fine-tuned)."""
    return json.loads((run / f"round_{r:02d}" / "metrics.json").read_text())


def main() -> None:
    args = parse(__doc__, lambda ap: ap.add_argument("--round", type=int, required=True))
    cfg, video, flow = open_run(args)
    if cfg.fusion.vote_networks >= 2 and cfg.fusion.vote_for != "labels":
        raise SystemExit(
            "fusion_profile.py: only fusion.vote_for: labels is profiled as the run fused"
        )
    model, ctx, state = open_round(args.run, args.round, cfg, video, flow)
    metrics = _metrics(args.run, args.round)
    pred = predict(model, ctx.frames_t, cfg.output.batch_size, CPU)
    label_probs = None
    older = earlier_network_round(
        args.round, lambda r: "finetune" in _metrics(args.run, r).get("timings", {})
    )
    if cfg.fusion.vote_networks >= 2 and older is not None:
        before, _, _ = open_round(args.run, older, cfg, video, flow)
        earlier = predict(before, ctx.frames_t, cfg.output.batch_size, CPU)
        label_probs = mean_prediction(pred, earlier, lazy=True).probs
    fcfg = cfg.fusion.model_copy(update={"guided_radius": metrics["guided_radius"],
                                         "network_weight": metrics["network_weight"]})  # fmt: skip
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    fuse(pred.probs, state.human, video.frames, flow, fcfg, state.annotated, state.layers,
         state.complete_mask(len(ctx.classes)), named=state.named, regions=state.provenance,
         label_probs=label_probs)  # fmt: skip
    profile.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    rows = []
    for (path, _, name), (_, calls, _, cumulative, _) in stats.items():
        label = WATCHED.get((name, path.rsplit("/", 1)[-1]))
        if label is not None:
            rows.append({"part": label, "calls": calls, "seconds": round(cumulative, 2),
                         "share": round(cumulative / total, 3)})  # fmt: skip
    rows.sort(key=lambda r: -r["seconds"])
    for row in rows:
        row |= {"round": args.round, "frames": len(video.frames), "machine": machine(),
                "measured": time.strftime("%Y-%m-%d")}  # fmt: skip
    table = save_table(rows, args.csv)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
