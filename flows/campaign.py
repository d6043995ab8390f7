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

from prefect import flow, get_run_logger, task

from hvsa.campaign import advance, commit_round, dvc, git, round_metrics
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


def run_video_round(root: str, video: str) -> None:
    """The steps of one video's round, in order (the flow body, so that it could pause)."""
    for stage in BEFORE_ANNOTATION:
        reproduce_stage(root, stage, video)
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
    for key, metrics in campaign(args.workspace, args.rounds).items():
        print(key, metrics and {k: metrics[k] for k in ("round", "clicks_total", "miou")})


if __name__ == "__main__":
    main()
