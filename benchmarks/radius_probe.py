"""Which guided radius do a round's probes prefer, and which does the whole video?

Why: each round the fusion's guided radius is calibrated on labelled frames fused without their
own labels (``hvsa.method.calibrate``). This script takes a finished round of a benchmark run
(its network and human labels) and writes, for each radius, the calibration's leave-one-out
score on its probes (``probes_any``: frames holding any label, the probes the calibration uses;
``probes_full``: frames labelled in full, the estimate's probes) beside the mIoU of the whole
video's labels fused at that radius against the ground truth (``video_miou``).

    .venv/bin/python benchmarks/radius_probe.py ../shared/datasets/camvid/clips/0006R0 \\
        runs/b06/base/runs/auto --rounds 32 33 \\
        --csv benchmarks/results/0006R0/target/radius_probe.csv
"""

from __future__ import annotations

import argparse

from probe_common import CPU, open_round, open_run, parse, save_table  # the sibling module

from hvsa.method.calibrate import probe_frames, radius_scores
from hvsa.method.predict import predict
from hvsa.rounds.steps import compose_labels, estimate_probes, score

RADII = [0, 1, 2, 3]


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--rounds", type=int, nargs="+", required=True)

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    rows = []
    for r in args.rounds:
        model, ctx, state = open_round(args.run, r, cfg, video, flow)
        pred = predict(model, ctx.frames_t, cfg.output.batch_size, CPU)
        fusion, human = cfg.fusion, state.human
        probes = {"probes_any": probe_frames(human, fusion.calibration_probes),
                  "probes_full": estimate_probes(state, cfg)}  # fmt: skip
        scores = {k: radius_scores(pred.probs, human, video.frames, flow, fusion,
                                   state.annotated, RADII, p)
                  for k, p in probes.items()}  # fmt: skip
        for i, radius in enumerate(RADII):
            fcfg = fusion.model_copy(update={"guided_radius": radius})
            labels, _ = compose_labels(ctx, pred, state, cfg, fcfg)
            rows.append({"round": r, "radius": radius}
                        | {k: float(v[i]) for k, v in scores.items()}
                        | {"video_miou": score(video, labels, ctx.classes)[0]})  # fmt: skip
            print(rows[-1], flush=True)
        save_table(rows, args.csv)


if __name__ == "__main__":
    main()
