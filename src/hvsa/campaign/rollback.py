"""Rollback: return a video of a campaign to the state after an earlier round, losing nothing.

The workspace is not rewound: a rollback is a new commit that puts back the video's
``campaign.yaml`` entry and its git-tracked files (its round folders, its ``dvc.yaml`` and
``dvc.lock``, its inbox of hand-ins) as they were when round N was committed, checks the
outputs out of the DVC cache, moves the MLflow alias ``current`` back to that round's model and
records a ``rollback`` event in the ledger. Later rounds stay in git history and in the DVC
cache, so rolling "back" to a later round number returns to them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from hvsa.annotation.existing import EXISTING_DIR
from hvsa.annotation.ledger import Event, Ledger
from hvsa.campaign.versioning import commit_round, dvc, git, tool_env
from hvsa.campaign.workspace import (
    LOCK_FILE,
    Campaign,
    Workspace,
    lock_entries,
    stage_target,
    write_campaign,
)
from hvsa.errors import HvsaError

KEEP = ("flow.npz", "samples", EXISTING_DIR, "r0")  # the video's inputs, not its rounds


def _show(ws: Workspace, sha: str, path: str) -> str | None:
    proc = subprocess.run(
        ["git", "show", f"{sha}:{path}"],
        cwd=ws.root,
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    return proc.stdout if proc.returncode == 0 else None


def find_round_commit(ws: Workspace, key: str, round_no: int) -> str:
    """The newest commit, anywhere in history, that holds video ``key`` finished at round N."""
    ws.video(key)
    for sha in git(ws.root, "log", "--all", "--format=%H").split():
        text = _show(ws, sha, "campaign.yaml")
        if text is None:
            continue
        entry = Campaign.model_validate(yaml.safe_load(text)).videos.get(key)
        if entry is None or entry.round != round_no:
            continue
        if _show(ws, sha, f"data/{key}/r{round_no}/metrics.json") is not None:
            return sha
    raise HvsaError(f"video {key} has no committed round {round_no} to return to")


def rollback(ws: Workspace, key: str, round_no: int) -> str:
    """Restore video ``key`` to the state after round ``round_no``; returns the new commit."""
    if round_no < 1:
        raise HvsaError("rounds to return to start at 1 (round 0 is the starting network)")
    if git(ws.root, "status", "--porcelain").strip():
        raise HvsaError(f"{ws.root} has uncommitted changes: finish or commit the round first")
    was = ws.video(key).round
    sha = find_round_commit(ws, key, round_no)

    folder = ws.video_dir(key)
    for child in folder.iterdir() if folder.is_dir() else []:
        if child.name not in KEEP:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    git(ws.root, "checkout", sha, "--", f"data/{key}")  # its dvc.yaml and dvc.lock included
    stages = lock_entries(folder / LOCK_FILE)

    old = Campaign.model_validate(yaml.safe_load(_show(ws, sha, "campaign.yaml")))
    entry = old.videos[key].model_copy(update={"status": "active", "reason": None})
    ws.campaign.videos[key] = entry
    write_campaign(ws.root, ws.campaign)
    # the hand-ins of later rounds leave the inbox (they stay in git history): a redone round
    # asks for new labels instead of reading the old ones
    shutil.rmtree(ws.root / "inbox" / key, ignore_errors=True)
    git(ws.root, "checkout", sha, "--", f"inbox/{key}")
    dvc(ws.root, "checkout", "--force", *[stage_target(f"{k}@{key}") for k in stages])
    _restore_inputs(ws, list(stages.values()))

    _move_alias(Workspace.open(ws.root), key)
    with Ledger(ws.ledger_path) as ledger:
        ledger.append([Event(
            kind="rollback", campaign=ws.campaign.name, video=key, round=round_no,
            note=f"from round {was} to round {round_no} (commit {sha})",
        )])  # fmt: skip
    ws = Workspace.open(ws.root)
    commit_round(ws, f"rollback: {key} to round {round_no} (was round {was})")
    return git(ws.root, "rev-parse", "HEAD").strip()


def _restore_inputs(ws: Workspace, entries: list[dict]) -> None:
    """Put back, from the DVC cache, the previous round's files the restored stages read.

    Round N's stages depend on round N-1's checkpoint and labels, which no stage of the current
    pipeline produces; ``dvc checkout`` restores outputs only, so these come by hash.
    """
    cache = ws.root / dvc(ws.root, "cache", "dir").strip() / "files" / "md5"

    def cached(md5: str, name: str) -> Path:
        source = cache / md5[:2] / md5[2:]
        if not source.is_file():
            raise HvsaError(f"{name} is not in the DVC cache: `dvc pull` it first")
        return source

    for entry in entries:
        for dep in entry.get("deps", []):
            path, md5 = ws.root / dep["path"], dep.get("md5")
            if not md5 or path.exists():
                continue
            if md5.endswith(".dir"):  # a folder (the previous round's labels): file by file
                listing = json.loads(cached(md5, dep["path"]).read_text())
                files = [(path / f["relpath"], f["md5"]) for f in listing]
            else:
                files = [(path, md5)]
            for target, digest in files:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cached(digest, dep["path"]), target)


def _move_alias(ws: Workspace, key: str) -> None:
    """Point the registered model's ``current`` alias at the version of the restored model."""
    from hvsa.campaign.tracking import ALIAS, has_tracking, model_md5, model_name, tracking_uri

    if not has_tracking(ws):
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(ws))
    name = model_name(ws.campaign.name, key)
    md5 = model_md5(ws, key)
    for version in client.search_model_versions(f"name = '{name}'"):
        if md5 and version.tags.get("model.md5") == md5:
            client.set_registered_model_alias(name, ALIAS, version.version)
            return
