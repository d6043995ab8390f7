"""Prefect flow of an annotation campaign: rounds of DVC stages per video, until done.

Each step is a Prefect task that reproduces its DVC stage (``dvc repro <stage>@<video>``), so a
step finished before a crash is skipped on restart — DVC knows it is up to date — and the ledger
keys its events so nothing is recorded twice. Steps that can fail for passing reasons (a busy
DVC lock, the MLflow database) are retried with back-off. With a human annotator the flow run
pauses after ``select`` until the round's labels are submitted (see ``flows/README`` in the
main README); with the oracle it runs straight through.

Run it: ``python flows/campaign.py WORKSPACE [--rounds N]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from prefect import flow, get_run_logger, pause_flow_run, task
from prefect.input import RunInput

from hvsa.campaign import advance, commit_round, dvc, git, round_metrics
from hvsa.submission import submission_paths
from hvsa.tracking import log_round
from hvsa.workspace import Workspace

BEFORE_ANNOTATION = ("flow", "samples", "start", "predict", "select")
AFTER_ANNOTATION = ("annotate", "finetune", "labels", "evaluate")
RETRY_DELAYS = [2, 10, 30]


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, task_run_name="{stage}@{video}")
def reproduce_stage(root: str, stage: str, video: str) -> None:
    """``dvc repro stage@video``: runs the stage (and anything upstream) unless up to date."""
    dvc(Path(root), "repro", f"{stage}@{video}")


@task(task_run_name="advance")
def advance_round(root: str) -> list[str]:
    return advance(Workspace.open(root))


@task(retries=2, retry_delay_seconds=[2, 10], task_run_name="commit")
def commit(root: str, message: str) -> str:
    ws = Workspace.open(root)
    commit_round(ws, message)
    return git(ws.root, "rev-parse", "HEAD").strip()


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, task_run_name="mlflow@{video}")
def log_to_mlflow(root: str, video: str, commit_sha: str, seconds: float) -> None:
    log_round(Workspace.open(root), video, commit_sha, seconds)


class RoundLabels(RunInput):
    """What resumes a paused campaign: the round's labels are in the workspace's inbox."""

    video: str
    round: int
    submission: str  # path of rN.npz, relative to the workspace


def wait_for_labels(root: str, video: str, round_no: int) -> None:
    """Pause the flow run until labels for exactly this video and round are submitted.

    Runs in the flow body: Prefect pauses flow runs, not task runs. A resume with labels for
    another video or round, or with a missing file, is logged and the run pauses again.
    """
    logger = get_run_logger()
    ws = Workspace.open(root)
    npz, _ = submission_paths(ws.root / "inbox" / video, round_no)
    while not npz.is_file():
        description = (
            f"Labels for video {video}, round {round_no}: write {npz.relative_to(ws.root)} and "
            f"its .json, then resume with video={video!r}, round={round_no}."
        )
        answer = pause_flow_run(
            wait_for_input=RoundLabels.with_initial_data(
                description=description, video=video, round=round_no,
                submission=str(npz.relative_to(ws.root)),
            ),
            timeout=ws.cfg.annotation.wait_timeout_s,
            poll_interval=ws.cfg.annotation.poll_s,
        )  # fmt: skip
        if answer.video != video or answer.round != round_no:
            logger.warning("labels for %s round %d refused: waiting for %s round %d",
                           answer.video, answer.round, video, round_no)  # fmt: skip
        elif not (ws.root / answer.submission).is_file():
            logger.warning("submission %s not found: waiting again", answer.submission)


def run_video_round(root: str, video: str) -> None:
    """The steps of one video's round, in order; a human annotator makes the flow wait."""
    for stage in BEFORE_ANNOTATION:
        reproduce_stage(root, stage, video)
    ws = Workspace.open(root)
    if ws.cfg.annotation.annotator == "human":
        wait_for_labels(root, video, ws.video(video).round)
    for stage in AFTER_ANNOTATION:
        reproduce_stage(root, stage, video)


@flow(name="hvsa-campaign", log_prints=True)
def campaign(workspace: str, rounds: int | None = None) -> dict[str, dict | None]:
    """Run rounds over every active video until each is done, or ``rounds`` rounds ran."""
    logger = get_run_logger()
    root = str(Path(workspace).resolve())
    done = 0
    while rounds is None or done < rounds:
        active = advance_round(root)
        if not active:
            break
        started = time.perf_counter()
        ws = Workspace.open(root)
        for video in active:
            logger.info("video %s: round %d", video, ws.video(video).round)
            run_video_round(root, video)
        seconds = time.perf_counter() - started
        label = ", ".join(f"{v} r{ws.video(v).round}" for v in active)
        sha = commit(root, f"round: {label}")
        for video in active:
            log_to_mlflow(root, video, sha, seconds / len(active))
        done += 1
    ws = Workspace.open(root)
    return {key: round_metrics(ws, key) for key in ws.campaign.videos}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace")
    parser.add_argument("--rounds", type=int, help="at most this many rounds (default: until done)")
    args = parser.parse_args()
    # an absolute path: the annotation app finds the run it resumes by this parameter
    root = str(Path(args.workspace).resolve())
    for key, metrics in campaign(root, args.rounds).items():
        print(key, metrics and {k: metrics[k] for k in ("round", "clicks_total", "miou")})


if __name__ == "__main__":
    main()
