"""DVC stage entry points: ``python -m hvsa.campaign.stages.<name> VIDEO`` in a workspace.

Each stage is a thin layer of file I/O around the step functions of ``hvsa.rounds.steps``;
what it reads and writes is declared in the workspace's ``dvc.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from hvsa.campaign.workspace import Workspace
from hvsa.data.video import ClassList
from hvsa.errors import HvsaError
from hvsa.method.class_layers import LAYERS_NOT_IN_CAMPAIGNS
from hvsa.method.motion import load_flow
from hvsa.method.network import SegmentationNet, load_checkpoint, pick_device
from hvsa.method.samples import load_samples
from hvsa.rounds.steps import VideoContext


def run_stage(
    name: str, step: Callable[[Workspace, str], None], argv: list[str] | None = None
) -> int:
    """Parse ``VIDEO``, open the workspace in the working directory, run the step."""
    parser = argparse.ArgumentParser(prog=f"python -m hvsa.campaign.stages.{name}")
    parser.add_argument("video", help="video key of campaign.yaml")
    args = parser.parse_args(argv)
    try:
        step(Workspace.open(Path.cwd()), args.video)
    except HvsaError as exc:
        print(f"hvsa {name}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def load_context(ws: Workspace, key: str, classes: ClassList) -> VideoContext:
    """The video with its flow and samples, as the round steps need them."""
    if ws.cfg.layers.enabled:
        raise HvsaError(LAYERS_NOT_IN_CAMPAIGNS)
    video = ws.load_video(key)
    flow = load_flow(ws.video_dir(key) / "flow.npz")
    samples = load_samples(ws.video_dir(key) / "samples.npz")
    return VideoContext.build(video, classes, ws.cfg, flow, samples)


def load_model(ws: Workspace, folder: Path) -> tuple[SegmentationNet, ClassList, torch.device]:
    device = pick_device(ws.cfg.model.device)
    model, classes, _ = load_checkpoint(folder / "model.pt", device)
    return model, classes, device
