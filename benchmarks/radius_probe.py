"""Which guided radius do a round's probes prefer, and which does the whole video?

Why: each round the fusion's guided radius is calibrated on labelled frames fused without their
own labels (``hvsa.method.calibrate``). This script takes a finished round of a benchmark run
(its network and human labels) and writes, for each radius, the calibration's leave-one-out
score on several sets of probes beside the mIoU of the whole video's labels fused at that
radius against the ground truth (``video_miou``). The probe sets:

- ``probes_any``: ``calibration_probes`` frames holding any label, spread evenly over them in
  time order (``calibrate.probe_frames``, as the estimate takes its probes);
- ``probes_full``: frames labelled in full, the estimate's probes;
- ``probes_all``: every frame holding a label (``calibrate.radius_probes`` without its wait
  and its limit);
- ``probes_binned``: in each of ``calibration_probes`` equal stretches of the video, the
  labelled frame nearest its middle (a frame labelled later moves a probe only where it is
  nearer a middle than the one before);
- ``probes_spreadN``: N labelled frames spread evenly over them (``probes_any`` with N).

    .venv/bin/python benchmarks/radius_probe.py ../shared/datasets/camvid/clips/0006R0 \\
        runs/b06/base/runs/auto --rounds 32 33 \\
        --csv benchmarks/results/0006R0/target/radius_probe.csv
    .venv/bin/python benchmarks/radius_probe.py ... --rounds 8 9 ... 33 --sets any,all,binned \\
        --csv benchmarks/results/0006R0/target/radius_probe_sets.csv
    .venv/bin/python benchmarks/radius_probe.py ... --rounds 8 9 ... 33 --sets spread16,spread32 \\
        --no-video --csv benchmarks/results/0006R0/target/radius_probe_spread.csv
"""

from __future__ import annotations

import argparse

import numpy as np
from probe_common import CPU, open_round, open_run, parse, save_table  # the sibling module

from hvsa.config import Config
from hvsa.method.calibrate import labelled_frames, probe_frames, radius_scores
from hvsa.method.predict import predict
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import compose_labels, estimate_probes, score

RADII = [0, 1, 2, 3]


def binned_probes(human: np.ndarray, count: int) -> np.ndarray:
    """In each of ``count`` equal stretches of the video, the labelled frame nearest its middle
    (none where a stretch holds no label)."""
    labelled = labelled_frames(human)
    if len(labelled) < count:
        return np.array([], np.intp)
    edges = np.linspace(0, len(human), count + 1)
    picks = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = labelled[(labelled >= lo) & (labelled < hi)]
        if len(inside):
            picks.append(inside[np.argmin(np.abs(inside - (lo + hi - 1) / 2))])
    return np.array(picks, np.intp)


def probe_set(kind: str, state: LoopState, cfg: Config) -> np.ndarray:
    """The frames of probe set ``kind`` (``any``, ``full``, ``all``, ``binned``, ``spreadN``)."""
    human, count = state.drawn_human(), cfg.fusion.calibration_probes  # fills are no probes
    if kind == "any":
        return probe_frames(human, count)
    if kind == "full":
        return estimate_probes(state, cfg)
    if kind == "all":
        return labelled_frames(human)
    if kind == "binned":
        return binned_probes(human, count)
    return probe_frames(human, int(kind.removeprefix("spread")))


def main() -> None:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--rounds", type=int, nargs="+", required=True)
        ap.add_argument("--sets", default="any,full",
                        help="probe sets to score, of any,full,all,binned,spreadN")  # fmt: skip
        ap.add_argument("--no-video", action="store_true",
                        help="skip the video's mIoU at each radius (the slow part)")  # fmt: skip

    args = parse(__doc__, options)
    cfg, video, flow = open_run(args)
    rows = []
    for r in args.rounds:
        model, ctx, state = open_round(args.run, r, cfg, video, flow)
        pred = predict(model, ctx.frames_t, cfg.output.batch_size, CPU)
        fusion, human = cfg.fusion, state.human
        probes = {f"probes_{k}": probe_set(k, state, cfg) for k in args.sets.split(",")}
        truth = state.drawn_human()  # scored on drawn labels, as steps.fusion_settings does
        labelled = len(labelled_frames(truth))
        scores = {k: radius_scores(pred.probs, human, video.frames, flow, fusion,
                                   state.annotated, RADII, p, truth)
                  for k, p in probes.items()}  # fmt: skip
        for i, radius in enumerate(RADII):
            row = {"round": r, "radius": radius, "labelled": labelled}
            row |= {k: float(v[i]) for k, v in scores.items()}
            if not args.no_video:
                fcfg = fusion.model_copy(update={"guided_radius": radius})
                labels, _ = compose_labels(ctx, pred, state, cfg, fcfg)
                row["video_miou"] = score(video, labels, ctx.classes)[0]
            rows.append(row)
            print(rows[-1], flush=True)
        save_table(rows, args.csv)


if __name__ == "__main__":
    main()
