"""What the round stages read back: the video with its flow and sample sets, a round's view,
a round's network and class list.

A stage run as its own process (``dvc repro``) reads them from the workspace once. The
campaign flow runs the stages of a video one after another in its own process, so what they
read is kept here between them, keyed by the files it came from and their modification times:
the next stage of the same video finds the video, the flow, the sample sets, the view and the
round state the previous stage wrote already in memory, exactly as they are on disk.

A round's view (the network's prediction and the fused belief, hundreds of MB at full
resolution) is not a versioned output: it is a function of the round's network
(``model.pt``), its human labels (``human.npz``), the video and the settings, all versioned.
Hashing, caching and pushing it each round cost more than a class-layer round's own work and
filled the DVC cache with ~770 MB a round on a 101-frame CamVid clip. So it is kept in memory
for the next stage, and written, when it leaves memory or the process ends, to a store beside
the workspace's data (``.hvsa/views/<video>/``, not versioned), named by digests of what it
was made from: a later process (the next ``hvsa campaign round``, ``dvc repro``'s process per
stage, a restart) reads it from there, and where it is missing (a process killed, a rollback
past the store's last rounds) it is computed again from the versioned inputs — the same
numbers, since the engine is deterministic on them. (Written during the round instead, even
in a background thread, it slowed fine-tuning on a 2-core machine by a third.)
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hvsa.campaign.workspace import Workspace
from hvsa.config import FusionConfig
from hvsa.data.arrays import load_arrays, save_arrays
from hvsa.data.video import ClassList
from hvsa.method.motion import load_flow
from hvsa.method.network import SegmentationNet, load_checkpoint, pick_device
from hvsa.method.predict import Prediction
from hvsa.method.samples import load_samples
from hvsa.rounds.engine import (
    FUSION,
    View,
    earlier_network_round,
    label_round,
    network_vote,
    predict_video,
    video_contexts,
    view_of,
)
from hvsa.rounds.rules import sample_set_names
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import VideoContext

# a campaign's videos one after another: the last two of each kind is all a round needs
_KEEP = 2
_MEMO: dict[str, OrderedDict] = {}
# (kind, key) of memo entries no file holds yet → what writes them
_UNSAVED: dict[tuple[str, tuple], Callable[[], None]] = {}


def _memo(kind: str, key: tuple, make: Callable[[], Any], keep: int = _KEEP) -> Any:
    cache = _MEMO.setdefault(kind, OrderedDict())
    if key not in cache:
        cache[key] = make()
        while len(cache) > keep:
            old, _ = cache.popitem(last=False)
            unsaved = _UNSAVED.pop((kind, old), None)
            if unsaved is not None:  # a view leaving memory that no file holds yet
                unsaved()
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


VIEWS = ".hvsa/views"
_KEEP_ON_DISK = 4  # files per video: this round's and the previous round's prediction and belief


def _file_digest(path: Path) -> str:
    digest = lambda: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    return _memo("digests", _stamp(path), digest, keep=64)


def _view_keys(ws: Workspace, key: str, folder: Path) -> tuple[str, str]:
    """Digests naming a round's prediction (its network, the settings and code that predict)
    and its belief (those, its human labels, the fusion settings)."""
    code = ws.root / ".hvsa" / "code" / "labels.sha256"
    cfg = ws.cfg
    settings = "|".join(
        (code.read_text() if code.is_file() else "", cfg.model.model_dump_json(),
         cfg.flow.model_dump_json(), ws.video(key).path)
    )  # fmt: skip
    pred = hashlib.sha256(f"{_file_digest(folder / 'model.pt')}|{settings}".encode())
    belief = hashlib.sha256(
        f"{pred.hexdigest()}|{_file_digest(folder / 'human.npz')}|"
        f"{cfg.fusion.model_dump_json()}".encode()
    )
    return pred.hexdigest()[:32], belief.hexdigest()[:32]


def _store(ws: Workspace, key: str) -> Path:
    folder = ws.root / VIEWS / key
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        ignore = ws.root / VIEWS / ".gitignore"
        if not ignore.is_file():
            ignore.write_text("# derived from the versioned rounds: not versioned\n*\n")
    return folder


def _save(path: Path, **arrays: torch.Tensor) -> None:
    """Write ``arrays`` as float16 to ``path`` (atomically) and keep only the newest files of
    its folder."""
    if path.is_file():
        return
    save_arrays(path, **{k: v.half().numpy() for k, v in arrays.items()})
    kept = sorted(path.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[_KEEP_ON_DISK:]:
        old.unlink(missing_ok=True)


def save_views() -> None:
    """Write every view still only in memory to the store (done when the process exits)."""
    while _UNSAVED:
        _, write = _UNSAVED.popitem()
        write()


atexit.register(save_views)


def keep_view(ws: Workspace, key: str, folder: Path, view: View) -> None:
    """The view a stage has just made for the round in ``folder`` (its ``model.pt`` and
    ``human.npz`` written), kept in memory for the next stage.

    It is written to the store only when it leaves memory (another video's views pushed it
    out) or the process ends — a flow running round after round never writes it — and an older
    round's view of the same video that was never written never will be: no stage reads it.
    """
    pred_key, belief_key = _view_keys(ws, key, folder)
    store = _store(ws, key)

    def write() -> None:
        if not ws.root.joinpath("campaign.yaml").is_file():
            return  # the workspace is gone
        own = view.network  # a vote of two networks is made again from their predictions
        _save(store / f"pred-{pred_key}.npz", probs=own.probs, features=own.features)
        _save(store / f"belief-{belief_key}.npz", probs=view.belief.probs)

    for entry in [e for e in _UNSAVED if e[0] == "views" and e[1][1] == key]:
        del _UNSAVED[entry]  # superseded by this round's
    _memo("predictions", (pred_key,), lambda: view.network)
    _memo("views", (belief_key, key), lambda: view)
    _UNSAVED[("views", (belief_key, key))] = write


def _load_prediction(path: Path) -> Prediction:
    arrays = load_arrays(path, "a stored prediction")
    return Prediction(torch.from_numpy(arrays["probs"]),
                      torch.from_numpy(arrays["features"]).float())  # fmt: skip


def stored_prediction(ws: Workspace, key: str, folder: Path) -> Prediction | None:
    """The prediction of the network in ``folder``, if a stage has made it (in memory or in the
    store); None where it must be predicted."""
    pred_key, _ = _view_keys(ws, key, folder)
    cache = _MEMO.get("predictions", {})
    if (pred_key,) in cache:
        return cache[(pred_key,)]
    path = _store(ws, key) / f"pred-{pred_key}.npz"
    if path.is_file():
        return _memo("predictions", (pred_key,), lambda: _load_prediction(path))
    return None


def _trained(folder: Path) -> bool:
    """Whether the round in ``folder`` fine-tuned its network (round 0: it made the first)."""
    path = folder / "finetune.json"
    return path.is_file() and bool(json.loads(path.read_text())["trained"])


def earlier_prediction(ws: Workspace, key: str, folder: Path) -> Prediction | None:
    """The prediction of the network before the one in ``folder``, which votes with it where
    ``fusion.vote_networks`` says so (``engine.network_vote``): the network of the round before
    the last round up to ``folder`` that fine-tuned (class layers keep their network). None
    where the vote needs none, or ``folder``'s network is the video's first."""
    if ws.cfg.fusion.vote_networks < 2:
        return None
    r = earlier_network_round(int(folder.name[1:]), lambda r: _trained(ws.round_dir(key, r)))
    if r is None:
        return None
    older = ws.round_dir(key, r)
    pred = stored_prediction(ws, key, older)
    if pred is None:
        pred_key, _ = _view_keys(ws, key, older)
        model, classes, device = load_model(ws, older)
        ctx = next(iter(load_contexts(ws, key, classes).values()))
        pred = _memo("predictions", (pred_key,), lambda: predict_video(model, ctx, ws.cfg, device))
    return pred


def read_view(ws: Workspace, key: str, folder: Path) -> View:
    """The view of the round in ``folder``: from memory, from the store, or made again from
    the round's network and human labels (as its ``labels`` stage made it)."""
    pred_key, belief_key = _view_keys(ws, key, folder)
    cache = _MEMO.get("views", {})
    if (belief_key, key) in cache:
        cache.move_to_end((belief_key, key))
        return cache[(belief_key, key)]
    path = _store(ws, key) / f"belief-{belief_key}.npz"
    pred = stored_prediction(ws, key, folder)
    # the stages that read a view (selection, fine-tuning) read its belief and its network's
    # own prediction; the earlier network votes in them only with fusion.vote_for: all (the
    # labels stage takes it itself)
    earlier = earlier_prediction(ws, key, folder) if ws.cfg.fusion.vote_for == "all" else None
    if pred is not None and path.is_file():
        belief = np.asarray(load_arrays(path, "a stored belief")["probs"])
        fusion = FusionConfig.model_validate_json((folder / FUSION).read_text())
        vote = network_vote(pred, earlier, ws.cfg)
        view = view_of(pred, vote, earlier, Prediction(torch.from_numpy(belief), pred.features),
                       fusion, ws.cfg)  # fmt: skip
        return _memo("views", (belief_key, key), lambda: view)
    model, classes, device = load_model(ws, folder)
    ctx = next(iter(load_contexts(ws, key, classes).values()))
    if pred is None:
        pred = predict_video(model, ctx, ws.cfg, device)
    state = read_state(folder / "human.npz")
    _, view = label_round(ctx, pred, state, ws.cfg, earlier=earlier, network=(model, device))
    keep_view(ws, key, folder, view)
    return view


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
