"""What the round stages read back: the video with its flow and sample sets, a round's view,
a round's network and class list.

A stage run as its own process (``dvc repro``) reads them from the workspace once. The
campaign flow runs the stages of a video one after another in its own process, so what they
read is kept here between them, keyed by the files it came from and their modification times:
the next stage of the same video finds the video, the flow, the sample sets, the view and the
round state the previous stage wrote already in memory, exactly as they are on disk.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hvsa.campaign.workspace import Workspace
from hvsa.data.video import ClassList
from hvsa.method.motion import load_flow
from hvsa.method.network import SegmentationNet, load_checkpoint, pick_device
from hvsa.method.samples import load_samples
from hvsa.rounds.engine import BELIEF, FUSION, PREDICTION, View, load_view, video_contexts
from hvsa.rounds.rules import sample_set_names
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import VideoContext

# a campaign's videos one after another: the last two of each kind is all a round needs
_KEEP = 2
_MEMO: dict[str, OrderedDict] = {}


def _memo(kind: str, key: tuple, make: Callable[[], Any]) -> Any:
    cache = _MEMO.setdefault(kind, OrderedDict())
    if key not in cache:
        cache[key] = make()
        while len(cache) > _KEEP:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def _stamp(*paths: Path) -> tuple:
    """What identifies files' contents cheaply: their paths, sizes and modification times."""
    out = []
    for path in paths:
        st = path.stat()
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_contexts(ws: Workspace, key: str, classes: ClassList) -> dict[str, VideoContext]:
    """The video with its flow and each sample set, as the round engine needs them."""
    names = sample_set_names(ws.cfg)
    flow_path = ws.video_dir(key) / "flow.npz"
    sets = [ws.sample_set(key, n) for n in names]
    frames = ws.resolve(ws.video(key).path)
    stamp = (*_stamp(flow_path, *sets, frames), tuple(names), classes.names,
             ws.cfg.model.scale)  # fmt: skip

    def make() -> dict[str, VideoContext]:
        video = ws.load_video(key)
        flow = load_flow(flow_path)
        samples = {n: load_samples(p) for n, p in zip(names, sets, strict=True)}
        base = VideoContext.build(video, classes, ws.cfg, flow, next(iter(samples.values())))
        return video_contexts(base, samples)

    return _memo("contexts", stamp, make)


def read_view(folder: Path) -> View:
    """A round's view (``prediction.npz``, ``belief.npz``, ``fusion.json``)."""
    stamp = _stamp(*(folder / name for name in (PREDICTION, BELIEF, FUSION)))
    return _memo("views", stamp, lambda: load_view(folder))


def remember_view(folder: Path, view: View) -> None:
    """The view a stage has just written to ``folder``, for the stage that reads it next."""
    stamp = _stamp(*(folder / name for name in (PREDICTION, BELIEF, FUSION)))
    _memo("views", stamp, lambda: view)


def read_state(path: Path) -> LoopState:
    """A round's state (``human.npz``): a copy, for a stage may change it (annotate does)."""
    return copy.deepcopy(_memo("states", _stamp(path), lambda: LoopState.load(path)))


def save_state(path: Path, state: LoopState) -> None:
    """Write a round's state, and keep a copy for the stage that reads it next."""
    state.save(path)
    kept = copy.deepcopy(state)
    _memo("states", _stamp(path), lambda: kept)


def load_model(ws: Workspace, folder: Path) -> tuple[SegmentationNet, ClassList, torch.device]:
    device = pick_device(ws.cfg.model.device)
    model, classes, _ = load_checkpoint(folder / "model.pt", device)
    return model, classes, device


def checkpoint_classes(folder: Path) -> ClassList:
    """The class list of a round's checkpoint (the network itself is not needed)."""
    path = folder / "model.pt"
    _, classes, _ = _memo(
        "checkpoints", _stamp(path), lambda: load_checkpoint(path, torch.device("cpu"))
    )
    return classes
