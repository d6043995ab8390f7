"""What the round stages read back: the video with its flow and sample sets, a round's
network and class list."""

from __future__ import annotations

from pathlib import Path

import torch

from hvsa.campaign.workspace import Workspace
from hvsa.data.video import ClassList, Video
from hvsa.method.motion import load_flow
from hvsa.method.network import SegmentationNet, load_checkpoint, pick_device
from hvsa.method.samples import load_samples
from hvsa.rounds.engine import video_contexts
from hvsa.rounds.rules import sample_set_names
from hvsa.rounds.steps import VideoContext


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
