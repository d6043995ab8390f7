"""Versioning of a workspace: git and DVC run as tools, a round committed and tagged.

Every git and DVC command hvsa runs goes through here, with this interpreter's ``python``
first on PATH (DVC stages run ``python -m hvsa.campaign.stages…``) and DVC's analytics off;
a failure is one line naming the command and the workspace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hvsa.campaign.workspace import Workspace, stage_target
from hvsa.errors import HvsaError


def tool_env() -> dict[str, str]:
    """Environment for git/DVC subprocesses: this interpreter's ``python`` first on PATH (the
    stages run ``python -m hvsa.campaign.stages…``), and no DVC analytics."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def _run(args: list[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        detail = " | ".join(line.strip() for line in tail[-3:] if line.strip())
        raise HvsaError(f"{what} failed in {cwd}: {detail}")
    return proc.stdout


def git(root: Path, *args: str) -> str:
    return _run(["git", *args], root, "git " + args[0])


def dvc(root: Path, *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], root, "dvc " + args[0])


def reproduce(ws: Workspace, targets: list[str] | None = None) -> None:
    """``dvc repro`` of some stages (``stage@video``), with their upstream ones, or of every
    video's stages: finished stages are skipped."""
    dvc(ws.root, "repro", *([stage_target(t) for t in targets] if targets else ["-P"]))


def commit_round(ws: Workspace, message: str, video: str | None = None) -> str:
    """Commit the workspace (campaign.yaml, the videos' DVC records and metrics) and tag it;
    returns the tag.

    With ``video``, only what is shared and that video's folders are added: another video's
    round may be running at the same time, its newest outputs not yet recorded by DVC (and so
    not yet ignored by git); they go into that video's own commit.
    """
    if video is None:
        git(ws.root, "add", "-A")
    else:
        paths = ["campaign.yaml", ".gitignore", ".hvsa", f"data/{video}",
                 f"inbox/{video}"]  # fmt: skip
        tracked = set(git(ws.root, "ls-files", "--", *paths).split())
        present = [p for p in paths if (ws.root / p).exists() or any(
            t == p or t.startswith(p + "/") for t in tracked)]  # fmt: skip
        git(ws.root, "add", "-A", "--", *present)
    if git(ws.root, "diff", "--cached", "--name-only").strip():
        git(ws.root, "commit", "-q", "-m", message)
    head = git(ws.root, "rev-parse", "--short", "HEAD").strip()
    rounds = "-".join(f"{k}.r{v.round}" for k, v in ws.campaign.videos.items())
    tag = f"{ws.campaign.name}/{rounds}/{head}"
    git(ws.root, "tag", "-f", tag)
    return tag
