"""Stage ``start``: round 0 of a video — the labels a team already had for it
(``data/<video>/existing``, recorded in the ledger as round 0's human labels), the campaign's
starting network (fine-tuned on those labels, if any), its prediction and the labels it writes
(the first view the first round selects from)."""

import json
import sys
import time

import pandas as pd

from hvsa.annotation.existing import EXISTING_DIR, read_existing
from hvsa.annotation.ledger import Ledger
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
from hvsa.rounds.steps import record_existing


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
    recorded = pd.DataFrame()
    existing = read_existing(ws.video_dir(key) / EXISTING_DIR)
    if existing is not None:  # keyed in the ledger: a rerun records nothing twice
        with Ledger(ws.ledger_path) as ledger:
            recorded = record_existing(ledger, existing, ctx, state, ws.campaign.name, key,
                                       cfg.annotation)  # fmt: skip
    timings: dict[str, float] = {}
    pred = start_prediction(model, ctx, state, cfg, device, timings)
    labels, view = label_round(ctx, pred, state, cfg, timings, network=(model, device))
    save_checkpoint(folder / "model.pt", model, classes, meta | {"round": 0})
    save_state(folder / "human.npz", state)
    save_fusion(folder, view)
    keep_view(ws, key, folder, view)
    save_chooser(folder, AutoChooser())
    write_labels(folder, video.frame_names, labels, video.frames, state.human, classes,
                 cfg.output.overlay_alpha)  # fmt: skip
    recorded.to_parquet(folder / "annotations.parquet", index=False)
    result = measure_round(0, recorded, state, labels, ctx, view, cfg, started, timings)
    (folder / "metrics.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_stage("start", step))
