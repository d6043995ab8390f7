"""Stage ``evaluate``: the round's metrics: clicks, labelled share, mIoU where truth exists."""

import json
import sys

import cv2
import numpy as np
import pandas as pd

from hvsa.campaign.stages import run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.method.network import load_checkpoint
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import score


def step(ws: Workspace, key: str) -> None:
    _, here = ws.current(key)
    _, classes, _ = load_checkpoint(here / "model.pt", "cpu")
    video = ws.load_video(key)
    labels = np.stack([
        cv2.imread(str(here / "labels" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        for name in video.frame_names
    ])  # fmt: skip
    value, per_class = score(video, labels, classes)
    state = LoopState.load(here / "human.npz")
    recorded = pd.read_parquet(here / "annotations.parquet")
    metrics = {
        "round": ws.video(key).round,
        "clicks": int(recorded["clicks"].sum()) if len(recorded) else 0,
        "clicks_total": state.clicks_total,
        "samples": len(recorded),
        "labelled_fraction": float(state.annotated.mean()),
        "miou": value,
        "miou_estimate": json.loads((here / "estimate.json").read_text())["miou_estimate"],
        "per_class": per_class,
    }
    (here / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_stage("evaluate", step))
