"""Stage ``start``: round 0 of a video — the campaign's starting network, its prediction and
the labels it writes before any human label (the first view the first round selects from)."""

import json
import sys
import time

import pandas as pd

from hvsa.campaign.stages import run_stage
from hvsa.campaign.stages.inputs import keep_view, load_contexts, save_state
from hvsa.campaign.workspace import Workspace
from hvsa.data.label_io import write_labels
from hvsa.data.video import check_classes
from hvsa.method.auto import AutoChooser
from hvsa.method.network import load_checkpoint, pick_device, save_checkpoint
from hvsa.rounds.engine import (
    label_round,
    measure_round,
    save_chooser,
    save_fusion,
    start_prediction,
)
from hvsa.rounds.state import LoopState


def step(ws: Workspace, key: str) -> None:
    started = time.perf_counter()
    cfg = ws.cfg
    device = pick_device(cfg.model.device)
    model, classes, meta = load_checkpoint(ws.resolve(ws.campaign.start_model), device)
    ctx = next(iter(load_contexts(ws, key, classes).values()))
    video = ctx.video
    check_classes(video, classes)
    folder = ws.round_dir(key, 0)
    state = LoopState.empty(len(video), video.size)
    timings: dict[str, float] = {}
    pred = start_prediction(model, ctx, state, cfg, device, timings)
    labels, view = label_round(ctx, pred, state, cfg, timings)
    save_checkpoint(folder / "model.pt", model, classes, meta | {"round": 0})
    save_state(folder / "human.npz", state)
    save_fusion(folder, view)
    keep_view(ws, key, folder, view)
    save_chooser(folder, AutoChooser())
    write_labels(folder, video.frame_names, labels, video.frames, state.human, classes,
                 cfg.output.overlay_alpha)  # fmt: skip
    result = measure_round(0, pd.DataFrame(), state, labels, ctx, view, cfg,
                           started, timings)  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_stage("start", step))
