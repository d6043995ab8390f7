"""Stage ``start``: round 0 of a video — the campaign's starting network and no labels yet."""

import sys

import torch

from hvsa.campaign.stages import run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.data.video import check_classes
from hvsa.method.network import load_checkpoint, save_checkpoint
from hvsa.rounds.state import LoopState


def step(ws: Workspace, key: str) -> None:
    video = ws.load_video(key)
    model, classes, meta = load_checkpoint(ws.resolve(ws.campaign.start_model), torch.device("cpu"))
    check_classes(video, classes)
    folder = ws.round_dir(key, 0)
    save_checkpoint(folder / "model.pt", model, classes, meta | {"round": 0})
    LoopState.empty(len(video), video.size).save(folder / "human.npz")


if __name__ == "__main__":
    sys.exit(run_stage("start", step))
