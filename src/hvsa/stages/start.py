"""Stage ``start``: round 0 of a video — the campaign's starting network and no labels yet."""

import sys

import torch

from hvsa.network import load_checkpoint, save_checkpoint
from hvsa.stages import run_stage
from hvsa.state import LoopState
from hvsa.video import check_classes
from hvsa.workspace import Workspace


def step(ws: Workspace, key: str) -> None:
    video = ws.load_video(key)
    model, classes, meta = load_checkpoint(ws.resolve(ws.campaign.start_model), torch.device("cpu"))
    check_classes(video, classes)
    folder = ws.round_dir(key, 0)
    save_checkpoint(folder / "model.pt", model, classes, meta | {"round": 0})
    LoopState.empty(len(video), video.size).save(folder / "human.npz")


if __name__ == "__main__":
    sys.exit(run_stage("start", step))
