"""Stage ``labels``: every frame's label — human labels carried along the flow and fused with
the round's network (``hvsa.method.fusion``), human labels winning — the view the next round
selects from and the round's metrics.

The network's prediction is made here once per round (and taken from the previous round when
the network did not change); the view (prediction, fused belief) is kept for the next round's
stages (``inputs.keep_view``), the calibrated fusion settings are versioned (``fusion.json``);
``metrics.json`` holds mIoU where the video has ground truth and the mIoU the belief expects
(the stop rule of a video without it).
"""

import json
import sys
import time

import pandas as pd

from hvsa.campaign.stages import run_stage
from hvsa.campaign.stages.inputs import (
    earlier_prediction,
    keep_view,
    load_contexts,
    load_model,
    read_state,
    stored_prediction,
)
from hvsa.campaign.workspace import Workspace
from hvsa.data.label_io import write_labels
from hvsa.rounds.engine import label_round, measure_round, predict_video, save_fusion


def step(ws: Workspace, key: str) -> None:
    started = time.perf_counter()
    cfg = ws.cfg
    prev, here = ws.current(key)
    model, classes, device = load_model(ws, here)
    ctx = next(iter(load_contexts(ws, key, classes).values()))
    video = ctx.video
    state = read_state(here / "human.npz")
    timings: dict[str, float] = {}
    pred = None
    if not json.loads((here / "finetune.json").read_text())["trained"]:
        # a class-layer round left the network as it was: so is its prediction
        pred = stored_prediction(ws, key, prev)
    if pred is None:
        t0 = time.perf_counter()
        pred = predict_video(model, ctx, cfg, device)
        timings["predict"] = time.perf_counter() - t0
    earlier = earlier_prediction(ws, key, here)
    labels, view = label_round(ctx, pred, state, cfg, timings, earlier=earlier,
                               network=(model, device))  # fmt: skip
    t0 = time.perf_counter()
    save_fusion(here, view)
    keep_view(ws, key, here, view)
    write_labels(here, video.frame_names, labels, video.frames, state.human, classes,
                 cfg.output.overlay_alpha)  # fmt: skip
    timings["write"] = time.perf_counter() - t0
    recorded = pd.read_parquet(here / "annotations.parquet")
    result = measure_round(ws.video(key).round, recorded, state, labels, ctx, view, cfg,
                           started, timings)  # fmt: skip
    (here / "metrics.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_stage("labels", step))
