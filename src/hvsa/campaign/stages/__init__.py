"""DVC stage entry points: ``python -m hvsa.campaign.stages.<name> VIDEO`` in a workspace.

Each stage is one call of the round engine (``hvsa.rounds.engine``) with file I/O around it:
it reads what the stage before it wrote into the round's folder and writes what the next
needs, so a campaign round computes what an in-process round computes, once. What each stage
reads and writes is declared in the video's ``data/<video>/dvc.yaml``:

- ``flow``, ``samples`` (once per video): the optical flow and every sample set the settings
  need (``auto`` needs several);
- ``start`` (round 0): the starting network's prediction and labels, the first view;
- ``select``: the round's samples or class layers, from the previous round's view;
- ``annotate``: the annotator's labels, recorded in the ledger;
- ``finetune``: the network, fine-tuned (or kept, after a class-layer round);
- ``labels``: prediction, calibration, fused labels for every frame, the round's metrics.

What the round stages read (the video's contexts, a round's network) is in ``inputs``; each
stage imports only what it runs, which is what its code fingerprint covers
(``hvsa.campaign.fingerprint``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from hvsa.campaign.workspace import (
    ROUND_STAGES,
    Workspace,
    recorded_in_round,
    stage_target,
    workspace_lock,
)
from hvsa.errors import HvsaError, crash_point
from hvsa.rounds.rules import check_settings


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


def run_here(root: Path, stage: str, video: str) -> bool:
    """``dvc repro data/<video>/dvc.yaml:<stage>`` without a new process: the stage's step
    runs in this one (what it read stays in memory for the next stage, ``inputs``), unless DVC
    says the stage is up to date; then it is recorded in the video's ``dvc.lock`` and the DVC
    cache as ``dvc repro`` records it. Returns whether the stage ran.

    Why: a campaign flow runs a video's stages one after another; a process per stage imports
    torch and reads the video, its flow and the previous round's view again each time, which
    costs more than a class-layer round's own work. A round stage that the ``dvc.lock`` does not
    record in this round's folder must run, so DVC's status check (0.1–0.3 s a stage) is only
    asked of stages that may be up to date.
    """
    from dvc.repo import Repo

    target = stage_target(f"{stage}@{video}")  # data/<video>/dvc.yaml:<stage>
    ws = Workspace.open(root)  # DVC's removal and status change neither params nor campaign.yaml
    # DVC's part (DVC's repository lock is one per workspace; the video's dvc.lock) under the
    # workspace's lock, so that other videos' stages run meanwhile and record in turn; the step
    # itself not
    with workspace_lock(root):
        must_run = stage in ROUND_STAGES and not recorded_in_round(
            root, stage, video, ws.video(video).round
        )
        # DVC resolves stage names and paths from the working directory: the workspace's
        with _in(root), Repo(str(root)) as repo:
            if not must_run and not repo.status(targets=[target]):
                return False
            with repo.lock:  # a clean slate, as `dvc repro` leaves it
                for found in repo.stage.collect(target):
                    found.remove_outs(ignore_remove=False, force=False)
    check_settings(ws.cfg)
    importlib.import_module(f"hvsa.campaign.stages.{stage}").step(ws, video)
    crash_point(f"{stage}-done", ws.video(video).round)  # outputs written, dvc.lock not yet
    with workspace_lock(root), _in(root), Repo(str(root)) as repo:
        repo.commit(target, force=True)
    return True


_CWD = threading.Lock()


@contextlib.contextmanager
def _in(root: Path):
    """The working directory is the process's: threads (videos' flow runs) take it in turn."""
    with _CWD, contextlib.chdir(root):
        yield
