"""DVC stage entry points: ``python -m hvsa.campaign.stages.<name> VIDEO`` in a workspace.

Each stage is one call of the round engine (``hvsa.rounds.engine``) with file I/O around it:
it reads what the stage before it wrote into the round's folder and writes what the next
needs, so a campaign round computes what an in-process round computes, once. What each stage
reads and writes is declared in the workspace's ``dvc.yaml``:

- ``flow``, ``samples`` (once per video): the optical flow and every sample set the settings
  need (``auto`` needs several);
- ``start`` (round 0): the starting network's prediction and labels, the first view;
- ``select``: the round's samples or class layers, from the previous round's view;
- ``annotate``: the annotator's labels, recorded in the ledger;
- ``finetune``: the network, fine-tuned (or kept, after a class-layer round);
- ``labels``: prediction, calibration, fused labels for every frame, the round's metrics.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from hvsa.campaign.workspace import Workspace
from hvsa.data.video import ClassList, Video
from hvsa.errors import HvsaError
from hvsa.method.motion import load_flow
from hvsa.method.network import SegmentationNet, load_checkpoint, pick_device
from hvsa.method.samples import load_samples
from hvsa.rounds.engine import video_contexts
from hvsa.rounds.rules import check_settings, sample_set_names
from hvsa.rounds.steps import VideoContext


def run_stage(
    name: str, step: Callable[[Workspace, str], None], argv: list[str] | None = None
) -> int:
    """Parse ``VIDEO``, open the workspace in the working directory, run the step."""
    parser = argparse.ArgumentParser(prog=f"python -m hvsa.campaign.stages.{name}")
    parser.add_argument("video", help="video key of campaign.yaml")
    args = parser.parse_args(argv)
    try:
        ws = Workspace.open(Path.cwd())
        check_settings(ws.cfg)
        step(ws, args.video)
    except HvsaError as exc:
        print(f"hvsa {name}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def load_contexts(
    ws: Workspace, key: str, classes: ClassList, video: Video | None = None
) -> dict[str, VideoContext]:
    """The video with its flow and each sample set, as the round engine needs them."""
    video = video if video is not None else ws.load_video(key)
    flow = load_flow(ws.video_dir(key) / "flow.npz")
    sets = {n: load_samples(ws.sample_set(key, n)) for n in sample_set_names(ws.cfg)}
    base = VideoContext.build(video, classes, ws.cfg, flow, next(iter(sets.values())))
    return video_contexts(base, sets)


def load_model(ws: Workspace, folder: Path) -> tuple[SegmentationNet, ClassList, torch.device]:
    device = pick_device(ws.cfg.model.device)
    model, classes, _ = load_checkpoint(folder / "model.pt", device)
    return model, classes, device


def checkpoint_classes(folder: Path) -> ClassList:
    """The class list of a round's checkpoint (the network itself is not needed)."""
    _, classes, _ = load_checkpoint(folder / "model.pt", torch.device("cpu"))
    return classes
