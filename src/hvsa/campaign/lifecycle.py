"""Campaign workspaces: create one, advance its rounds with DVC, version each round with git.

A round of a video is done when its ``metrics.json`` exists. Advancing bumps the round in
``campaign.yaml`` (or marks the video done when it reached the target mIoU, the round limit or
the click cap); ``dvc repro`` then runs the round's stages; a git commit and tag per round make
the state after it restorable exactly (``git checkout <tag> && dvc checkout``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from hvsa.campaign.fingerprint import write_fingerprints
from hvsa.campaign.versioning import commit_round, dvc, git
from hvsa.campaign.workspace import (
    NAME_PATTERN,
    STAGES,
    Campaign,
    CampaignVideo,
    Workspace,
    recorded_in_round,
    workspace_lock,
    write_campaign,
)
from hvsa.config import Config, apply_overrides, find_params, load_config
from hvsa.data.video import Video
from hvsa.errors import HvsaError
from hvsa.rounds.rules import check_settings, from_nothing, stop_reason

GITIGNORE = "/data/ledger.sqlite*\n/data/app.sqlite*\n/mlflow.db*\n/mlruns/\n__pycache__/\n"


def _make_inbox(root: Path, key: str) -> None:
    """The folder where a video's human labels are handed in (a dependency of `annotate`)."""
    folder = root / "inbox" / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README").write_text(
        f"Human label submissions of campaign video {key!r}: rN.npz + rN.json per round.\n"
    )


def _check_inputs(
    model: Path,
    videos: dict[str, str],
    cfg: Config,
    labels: dict[str, dict],
    loaded: dict[str, Video] | None = None,
) -> dict:
    """Read the starting network, every video whole and the labels a team already has for some
    of them (a truncated checkpoint or frame, or labels naming no class, are refused here, not
    committed as a campaign's first round); returns each video's existing labels or None.

    ``labels``: video name → ``source``, ``fmt``, ``clicks``, ``by`` (as ``hvsa run --labels``).
    ``loaded``: videos already read (a start from nothing reads them all), not read again; the
    others are read one at a time.
    """
    import torch

    from hvsa.annotation.existing import load_existing
    from hvsa.data.video import check_classes, load_video
    from hvsa.method.network import load_checkpoint

    unknown = sorted(set(labels) - set(videos))
    if unknown:
        raise HvsaError(f"--labels for {', '.join(unknown)}: no such --video in the campaign")
    _, classes, _ = load_checkpoint(model, torch.device("cpu"))
    existing = {}
    for key, path in videos.items():
        video = (loaded or {}).get(key) or load_video(path, cfg.data.classes_file, cfg.data.void_id)
        check_classes(video, classes)
        existing[key] = None
        if (given := labels.get(key)) is not None:
            existing[key] = load_existing(given["source"], video, classes, given["fmt"],
                                          given["by"], given["clicks"], video.void_id)  # fmt: skip
    return existing


S3 = "s3://"


def _check_remote(cfg: Config) -> None:
    """Refuse, before anything is written, a DVC remote the workspace could not push to: a
    folder or ``s3://bucket/prefix`` (with the S3 plugin installed), an endpoint only for S3."""
    import importlib.util

    remote, endpoint = cfg.campaign.remote, cfg.campaign.remote_endpoint
    if remote is not None and "://" in remote and not remote.startswith(S3):
        raise HvsaError(f"campaign.remote {remote}: a folder or s3://bucket/prefix")
    if remote is not None and remote.startswith(S3):
        if len(remote) == len(S3) or remote[len(S3)] == "/":
            raise HvsaError(f"campaign.remote {remote}: s3:// needs a bucket (s3://bucket/prefix)")
        if importlib.util.find_spec("dvc_s3") is None:
            raise HvsaError(
                f"campaign.remote {remote} needs DVC's S3 plugin: pip install 'hvsa[s3]'"
            )
    if endpoint is not None and not (remote or "").startswith(S3):
        raise HvsaError("campaign.remote_endpoint is for an s3:// campaign.remote")


def _fresh_start(
    videos: dict[str, str], cfg: Config, classes_file: Path | None, folder: Path
) -> tuple[Path, dict[str, Video]]:
    """A starting network that knows nothing, for the videos' class list (``classes_file`` or
    their classes.json), written into ``folder``; and the videos, read for it."""
    from hvsa.data.video import load_video, start_classes
    from hvsa.rounds.rules import start_network

    loaded = {k: load_video(p, cfg.data.classes_file, cfg.data.void_id) for k, p in videos.items()}
    classes = start_classes(list(loaded.values()), classes_file)
    return start_network(folder / "start.pt", list(loaded.values()), classes, cfg), loaded


def init_workspace(
    root: Path,
    name: str,
    model: Path | None,
    videos: dict[str, str],
    params: Path | None = None,
    overrides: dict | None = None,
    classes_file: Path | None = None,
    labels: dict[str, dict] | None = None,
) -> Workspace:
    """Create a campaign workspace: git + DVC (local remote), params, pipeline, videos, model.

    Without ``model`` the campaign starts from a network that knows nothing, built for the
    videos' classes (``classes_file`` or their classes.json). ``labels``: labels a team already
    has, per video name (``source``, ``fmt``, ``clicks``, ``by``), kept in
    ``data/<video>/existing`` and recorded by the video's round 0 as human labels."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hvsa-start-") as tmp:
        return _init_workspace(root, name, model, videos, params, overrides, classes_file,
                               Path(tmp), labels or {})  # fmt: skip


def _init_workspace(
    root: Path,
    name: str,
    model: Path | None,
    videos: dict[str, str],
    params: Path | None,
    overrides: dict | None,
    classes_file: Path | None,
    tmp: Path,
    labels: dict[str, dict],
) -> Workspace:
    root = root.resolve()
    if (root / "campaign.yaml").exists():
        raise HvsaError(f"{root} already holds a campaign")
    if not videos:
        raise HvsaError("a campaign needs at least one --video NAME=PATH")
    for key, path in videos.items():
        if not NAME_PATTERN.match(key):
            raise HvsaError(f"video name {key!r} may hold only letters, digits, '.', '_', '-'")
        if not Path(path).exists():
            raise HvsaError(f"video {key}: {path} not found")
    if model is not None and not model.is_file():
        raise HvsaError(f"starting checkpoint not found: {model}")
    source = find_params(params)
    cfg = load_config(source, overrides)
    if model is None and (fresh := from_nothing(cfg)) is not cfg:  # into the workspace's params
        spread = {"selection.spread_frames": fresh.selection.spread_frames}
        overrides, cfg = {**(overrides or {}), **spread}, fresh
    check_settings(cfg)  # fail early, before anything is written: settings, network, videos
    _check_remote(cfg)
    loaded = None
    if model is None:
        model, loaded = _fresh_start(videos, cfg, classes_file, tmp)
    existing = _check_inputs(model, videos, cfg, labels, loaded)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").exists():
        git(root, "init", "-q")
    for key, value in (("user.name", "hvsa"), ("user.email", "hvsa@localhost")):
        if subprocess.run(["git", "config", key], cwd=root, capture_output=True).returncode:
            git(root, "config", key, value)
    if not (root / ".dvc").exists():
        dvc(root, "init", "-q")
    if overrides:
        raw = apply_overrides(yaml.safe_load(source.read_text()), overrides)
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    else:
        shutil.copyfile(source, root / "params.yaml")
    ws_params = yaml.safe_load((root / "params.yaml").read_text())
    remote = ws_params["campaign"]["remote"] or str(root.parent / f"{root.name}-dvc-remote")
    if not remote.startswith(S3):
        remote = str(Path(remote).resolve())
    dvc(root, "remote", "add", "-f", "-d", "local", remote)
    if cfg.campaign.remote_endpoint:
        dvc(root, "remote", "modify", "local", "endpointurl", cfg.campaign.remote_endpoint)
    # outputs become links to the cache instead of copies of it: a round's network and its
    # label and overlay images are not copied once more per round (stages never write into an
    # output in place: DVC removes a stage's outputs before it runs, and arrays are written
    # then renamed)
    dvc(root, "config", "cache.type", "hardlink,copy")
    entries = {
        key: CampaignVideo(
            path=str(Path(path).resolve()), round=1, prev=0, status="active", reason=None
        )
        for key, path in videos.items()
    }
    write_campaign(root, Campaign(name=name, start_model="data/pretrained.pt", videos=entries))
    for key in videos:
        _make_inbox(root, key)
    (root / "data").mkdir(exist_ok=True)
    shutil.copyfile(model, root / "data" / "pretrained.pt")
    dvc(root, "add", "data/pretrained.pt")
    from hvsa.annotation.existing import EXISTING_DIR, save_existing

    for key, given in existing.items():
        save_existing(root / "data" / key / EXISTING_DIR, given)
        dvc(root, "add", f"data/{key}/{EXISTING_DIR}")
    with open(root / ".gitignore", "a") as f:
        f.write(GITIGNORE)
    write_fingerprints(root)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"campaign {name}: start with {len(videos)} video(s)")
    return Workspace.open(root)


def round_metrics(ws: Workspace, key: str) -> dict | None:
    path = ws.round_dir(key, ws.video(key).round) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def advance(ws: Workspace, only: str | None = None) -> list[str]:
    """Move every video whose round is finished (or only video ``only``) to its next round, or
    mark it done.

    Returns the videos that have a round to run. A video whose round is not finished yet (a
    crash, or labels still awaited) stays where it is, so rerunning continues that round. Under
    the workspace's lock, from campaign.yaml as it is then: other videos' flow runs advance
    their own entries at the same time.
    """
    with workspace_lock(ws.root):
        ws = Workspace.open(ws.root)
        campaign = ws.campaign
        for key, video in campaign.videos.items():
            if video.status == "done" or (only is not None and key != only):
                continue
            metrics = round_metrics(ws, key)
            # a round is finished when DVC recorded its last stage in the round's folder: a
            # stage killed after writing metrics.json but before dvc.lock recorded it is not;
            # settings changed after a finished round apply from the next round on
            if metrics is None or not recorded_in_round(ws.root, STAGES[-1], key, video.round):
                continue
            reason = stop_reason(metrics, ws.cfg)
            if reason is not None:
                video.status, video.reason = "done", reason
            else:
                video.prev, video.round = video.round, video.round + 1
        write_campaign(ws.root, campaign)
        write_fingerprints(ws.root)  # a changed method reruns the stages that run it
    return [k for k, v in campaign.videos.items()
            if v.status == "active" and (only is None or k == only)]  # fmt: skip


def head_commit(root: str) -> str:
    return git(Path(root), "rev-parse", "HEAD").strip()


def commit_and_tag(root: str, message: str, video: str | None = None) -> str:
    """Commit and tag the workspace after a round (of ``video`` alone: :func:`commit_round`);
    the new commit."""
    with workspace_lock(Path(root)):
        commit_round(Workspace.open(root), message, video)
        return head_commit(root)


def log_to_mlflow(root: str, video: str, round_no: int, commit: str, seconds: float) -> None:
    """Log a committed round; under the workspace's lock, as MLflow's SQLite file is one."""
    from hvsa.campaign.tracking import log_round

    with workspace_lock(Path(root)):
        log_round(Workspace.open(root), video, round_no, commit, seconds)


def reproduce_video(root: str, video: str) -> None:
    """Every stage of the video's current round, in order, each unless DVC says it is up to
    date (``hvsa.campaign.stages.run_here``: in this process, recorded as ``dvc repro``)."""
    from hvsa.campaign.stages import run_here

    for stage in STAGES:
        run_here(Path(root), stage, video)


@dataclass(frozen=True)
class RoundDriver:
    """How the steps of a campaign round are carried out.

    One round is always advance → each active video's stages → commit and tag → MLflow; the
    driver says how each step runs: directly (``hvsa campaign round``) or as Prefect tasks with
    retries and a pause for human labels (``hvsa.campaign.flow``).
    """

    advance: Callable[[str], list[str]]
    run_video: Callable[[str, str], None]
    commit: Callable[[str, str], str]
    log: Callable[[str, str, int, str, float], object]


DIRECT = RoundDriver(
    advance=lambda root: advance(Workspace.open(root)),
    run_video=reproduce_video,
    commit=commit_and_tag,
    log=log_to_mlflow,
)


def run_round(root: str | Path, driver: RoundDriver = DIRECT) -> list[str]:
    """One round for every active video: advance, run its stages, commit and tag, log to
    MLflow. Returns the videos that ran a round (none when every video is done)."""
    root = str(Path(root).resolve())
    active = driver.advance(root)
    if not active:
        return []
    started = time.perf_counter()
    for video in active:
        driver.run_video(root, video)
    seconds = time.perf_counter() - started
    rounds = {k: Workspace.open(root).video(k).round for k in active}
    sha = driver.commit(root, "round: " + ", ".join(f"{k} r{r}" for k, r in rounds.items()))
    for video in active:
        driver.log(root, video, rounds[video], sha, seconds / len(active))
    return active


def add_videos(root: Path, inbox: Path) -> list[str]:
    """Add every video folder (or file) of ``inbox`` not yet in the campaign; returns new keys.

    The key is the folder's name; a name already used by another path is refused, so a video
    can never silently replace another one's history.
    """
    ws = Workspace.open(root)
    known = {Path(v.path).resolve(): k for k, v in ws.campaign.videos.items()}
    added = []
    for path in sorted(inbox.iterdir()) if inbox.is_dir() else []:
        key = path.stem
        if path.name.startswith(".") or path.resolve() in known:
            continue
        if not NAME_PATTERN.match(key):
            raise HvsaError(f"video name {key!r} may hold only letters, digits, '.', '_', '-'")
        if key in ws.campaign.videos:
            raise HvsaError(f"{path}: campaign {ws.campaign.name} already has a video {key!r}")
        ws.campaign.videos[key] = CampaignVideo(
            path=str(path.resolve()), round=1, prev=0, status="active", reason=None
        )
        ws.load_video(key)  # a video that cannot be read is refused before it is added
        _make_inbox(ws.root, key)
        added.append(key)
    if added:
        write_campaign(ws.root, ws.campaign)
        git(ws.root, "add", "-A")
        git(ws.root, "commit", "-q", "-m", "campaign: add " + ", ".join(added))
    return added
