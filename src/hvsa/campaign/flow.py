"""The Prefect flows of a campaign: each video's rounds of DVC stages in a flow run of its own,
the videos side by side, until done; and an inbox that adds new videos on a schedule.

A video's round is advance → its stages → commit and tag → MLflow, the steps of
:func:`hvsa.campaign.lifecycle.run_round` for one video, each a Prefect task: every stage runs
on its own, in the flow's process, and is recorded in the video's ``dvc.lock`` as ``dvc repro
data/<video>/dvc.yaml:<stage>`` would record it, so a step finished before a crash is skipped
on restart — DVC knows it is up to date — and the ledger keys its events so nothing is
recorded twice. The campaign flow starts one ``hvsa-video`` flow run per active video, in
threads of its process; at most ``campaign.parallel_steps`` of them are still preparing their
first round at any time, the next one starting as soon as one of them has its round open
(:class:`OpeningRamp`). With human annotators each run pauses after ``select`` until its own
round's labels are handed in (:class:`RoundLabels`), and the others go on meanwhile —
annotators label video A while B fine-tunes. What the runs share (DVC's repository lock,
campaign.yaml, a commit, MLflow's file) is changed under the workspace's lock; the heavy steps
run side by side — in the flow's process, or, with ``campaign.task_runner`` set, on a Dask
cluster (:mod:`hvsa.campaign.cluster`) while the runs wait for them. A round's MLflow logging
runs after its commit, before the video's next round. Steps that can fail for passing reasons
(the MLflow database) are retried with back-off. With the oracle the runs go straight through.

Run it: ``hvsa campaign run WORKSPACE [--rounds N]`` (or ``python flows/campaign.py``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prefect import flow, get_run_logger, pause_flow_run, task
from prefect.context import SettingsContext, get_settings_context
from prefect.input import RunInput

from hvsa.annotation.submission import submission_paths
from hvsa.campaign.cluster import HEAVY, resources, scheduler, task_runner
from hvsa.campaign.lifecycle import (
    add_videos,
    advance,
    commit_and_tag,
    log_to_mlflow,
    round_metrics,
)
from hvsa.campaign.stages import run_here
from hvsa.campaign.workspace import STAGES, Workspace

BEFORE_ANNOTATION = STAGES[: STAGES.index("annotate")]
AFTER_ANNOTATION = STAGES[STAGES.index("annotate") :]
RETRY_DELAYS = [2, 10, 30]


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, task_run_name="{stage}@{video}")
def reproduce_stage(root: str, stage: str, video: str) -> None:
    """The stage, unless DVC says it is up to date: run in this process (the flow's, or a Dask
    worker's) and recorded in the video's dvc.lock as ``dvc repro`` would
    (``hvsa.campaign.stages.run_here``). The log says where it ran."""
    ran = run_here(Path(root), stage, video)
    where = f"on {socket.gethostname()}, process {os.getpid()}"
    get_run_logger().info("%s@%s %s", stage, video, f"ran {where}" if ran else "up to date")


@task(retries=2, retry_delay_seconds=[2, 10], task_run_name="commit@{video}")
def commit_task(root: str, message: str, video: str) -> str:
    return commit_and_tag(root, message, video)


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, task_run_name="mlflow@{video}")
def mlflow_task(root: str, video: str, round_no: int, commit_sha: str, seconds: float) -> None:
    log_to_mlflow(root, video, round_no, commit_sha, seconds)


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


class StepGate:
    """At most ``slots`` steps at once, let in strictly in the order they asked.

    Why: the videos' flow runs are threads of one process on a machine of a few cores. Left to
    share the cores, eight videos' steps all progress at an eighth of the speed and every round
    opens late, at about the same time; taking turns, the first video's round opens after its
    own steps, the next one's after that, and people start labelling while the rest compute
    (``benchmarks/campaign_scale.py``). First come, first served: a video whose labels came in
    first is the first to get its next round ready."""

    def __init__(self, slots: int):
        self.slots = slots
        self._running = 0
        self._queue: collections.deque[object] = collections.deque()
        self._cv = threading.Condition()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        me = object()
        with self._cv:
            self._queue.append(me)
            self._cv.wait_for(lambda: self._queue[0] is me and self._running < self.slots)
            self._queue.popleft()
            self._running += 1
            self._cv.notify_all()
        try:
            yield
        finally:
            with self._cv:
                self._running -= 1
                self._cv.notify_all()


class OpeningRamp:
    """At most ``slots`` videos preparing their first round at once: the next video's run
    starts when one of them has opened its round (:func:`round_opened`) or ended.

    Why: a video run that starts costs Prefect's bookkeeping (creating the run, its first
    task runs, their logs) in the flow's process, beside the steps. With eight runs started
    together, the first two videos' first rounds opened 4.6-5.1 s after their runs began, and
    2.1-4.1 s with the runs let in as rounds open; people took their first sample at 9.7-10.2 s
    against 7.7-7.9 s (2026-12-05, 2 cores, ``benchmarks/campaign_scale.py``). Let in as rounds
    open, the first video's round opens after its own steps and each next one while people
    label the ones before.

    A place is keyed by the workspace and the video: one campaign flow at a time per workspace
    in a process (two would free each other's places early; the count stays right)."""

    def __init__(self, slots: int):
        self._free = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self._held: set[tuple[str, str]] = set()

    def admit(self, root: str, video: str) -> None:
        """Wait for a free place, then hold it for the video until it opens a round."""
        with self._lock:
            if (root, video) in self._held:
                raise ValueError(f"video {video!r} already holds a place")
        self._free.acquire()
        with self._lock:
            self._held.add((root, video))
            _RAMPS[(root, video)] = self

    def release(self, root: str, video: str) -> None:
        """Give the video's place back (once; later calls do nothing)."""
        with self._lock:
            if (root, video) not in self._held:
                return
            self._held.discard((root, video))
            if _RAMPS.get((root, video)) is self:
                del _RAMPS[(root, video)]
        self._free.release()


_RAMPS: dict[tuple[str, str], OpeningRamp] = {}


def round_opened(root: str, video: str) -> None:
    """The video's round is selected, ready for people: its place at the campaign's
    :class:`OpeningRamp`, if it holds one, goes to the next video."""
    ramp = _RAMPS.get((root, video))
    if ramp is not None:
        ramp.release(root, video)


_GATES: dict[tuple[str, int], StepGate] = {}
_GATES_LOCK = threading.Lock()
# the steps that compute (annotate only records the hand-in in the ledger)
COMPUTING = tuple(s for s in STAGES if s != "annotate")


def step_gate(ws: Workspace) -> StepGate:
    """The gate the video runs of this workspace share in this process
    (``campaign.parallel_steps``, default the machine's cores)."""
    slots = ws.cfg.campaign.parallel_steps or os.cpu_count() or 1
    with _GATES_LOCK:
        return _GATES.setdefault((str(ws.root), slots), StepGate(slots))


def dispatch_stage(ws: Workspace, stage: str, video: str, on_cluster: bool) -> None:
    """A stage as a Prefect task: submitted to the flow's Dask cluster when it is a heavy one
    and there is a cluster (:mod:`hvsa.campaign.cluster`), else run in this process, taking
    its turn at the :class:`StepGate` when it computes."""
    root = str(ws.root)
    if on_cluster and stage in HEAVY:
        with resources(ws.cfg, stage):
            reproduce_stage.submit(root, stage, video).result()
    elif stage in COMPUTING:
        with step_gate(ws)():
            reproduce_stage(root, stage, video)
    else:
        reproduce_stage(root, stage, video)


def run_video_round(root: str, video: str, on_cluster: bool = False) -> None:
    """The steps of one video's round, in order; a human annotator makes the flow wait."""
    ws = Workspace.open(root)
    get_run_logger().info("video %s: round %d", video, ws.video(video).round)
    for stage in BEFORE_ANNOTATION:
        dispatch_stage(ws, stage, video, on_cluster)
    round_opened(root, video)
    if ws.cfg.annotation.annotator == "human":
        wait_for_labels(root, video, ws.video(video).round)
    for stage in AFTER_ANNOTATION:
        dispatch_stage(ws, stage, video, on_cluster)


@task(task_run_name="advance@{video}")
def advance_video_task(root: str, video: str) -> bool:
    return bool(advance(Workspace.open(root), only=video))


@flow(name="hvsa-video", flow_run_name="{video}", log_prints=True)
def video_rounds(
    workspace: str, video: str, rounds: int | None = None, cluster: str | None = None
) -> dict | None:
    """One video's rounds until it is done, or ``rounds`` rounds ran: a flow run of its own,
    which pauses for its own labels while the other videos' runs go on. ``cluster``: the Dask
    scheduler its heavy steps go to (start it with :func:`video_flow`, which gives the run the
    matching task runner)."""
    root = str(Path(workspace).resolve())
    done = 0
    while (rounds is None or done < rounds) and advance_video_task(root, video):
        started = time.perf_counter()
        run_video_round(root, video, cluster is not None)
        round_no = Workspace.open(root).video(video).round
        sha = commit_task(root, f"round: {video} r{round_no}", video)
        mlflow_task(root, video, round_no, sha, time.perf_counter() - started)
        done += 1
    return round_metrics(Workspace.open(root), video)


def video_flow(cluster: str | None):
    """The ``hvsa-video`` flow, with a Dask task runner on ``cluster`` when there is one."""
    return (
        video_rounds
        if cluster is None
        else video_rounds.with_options(task_runner=task_runner(cluster))
    )


class Heartbeats:
    """Prefect's settings with flow-run heartbeats every ``seconds`` (None: none;
    ``campaign.heartbeat_s``), for the flow runs started under ``with beats():``.

    Why a context and not the environment: Prefect's setting takes no "none" from the
    environment, and a thread does not inherit the context of the one that started it, so the
    campaign's run and each video's thread enter it themselves. Why built once, before the
    threads: building Prefect's settings reads ``pyproject.toml`` from the working directory,
    which a stage running in another thread changes (``stages.run_here``)."""

    def __init__(self, seconds: int | None):
        current = get_settings_context()
        self.profile = current.profile
        update = {"flows.heartbeat_frequency": seconds}
        self.settings = current.settings.copy_with_update(updates=update)

    def __call__(self) -> SettingsContext:
        """A context to enter (one per use: it holds the token of the thread that entered it)."""
        return SettingsContext(profile=self.profile, settings=self.settings)


@flow(name="hvsa-campaign", log_prints=True)
def campaign(
    workspace: str, rounds: int | None = None, serial: bool = False
) -> dict[str, dict | None]:
    """Run rounds over every active video until each is done, or ``rounds`` rounds ran.

    Each video runs in a flow run of its own (``hvsa-video``), side by side: a video
    that waits for people holds up no other, and one video's fine-tuning runs while another's
    labels are drawn. What they share (DVC's record, campaign.yaml, commits, MLflow) is changed
    under the workspace's lock (:func:`hvsa.campaign.workspace.workspace_lock`).

    ``workspace`` should be an absolute path: the annotation app finds the run it resumes by it.
    ``serial``: one video's round after another, a round of every video before the next
    (how campaigns ran before videos ran side by side; ``benchmarks/campaign_scale.py``
    compares the two).
    """
    root = str(Path(workspace).resolve())
    ws = Workspace.open(root)
    active = [k for k, v in ws.campaign.videos.items() if v.status == "active"]
    beats = Heartbeats(ws.cfg.campaign.heartbeat_s)
    with scheduler(ws.cfg) as cluster:
        if cluster is not None:
            get_run_logger().info("heavy steps on the Dask cluster at %s", cluster)
        one_video = video_flow(cluster)
        if serial:
            done = 0
            while active and (rounds is None or done < rounds):
                for key in active:
                    with beats():
                        one_video(root, key, 1, cluster)
                done += 1
                ws = Workspace.open(root)
                active = [k for k, v in ws.campaign.videos.items() if v.status == "active"]
        elif active:
            # on a Dask cluster the heavy steps are the cluster's workers' to share out, and
            # without the ramp (campaign.opening_ramp: false) every run starts at once
            ramped = cluster is None and ws.cfg.campaign.opening_ramp
            ramp = OpeningRamp(step_gate(ws).slots if ramped else len(active))

            def one(key: str) -> dict | None:
                try:
                    with beats():
                        return one_video(root, key, rounds, cluster)
                finally:
                    ramp.release(root, key)

            with ThreadPoolExecutor(max_workers=len(active)) as pool:
                runs = []
                for key in active:
                    ramp.admit(root, key)
                    try:
                        runs.append(pool.submit(one, key))
                    except BaseException:
                        ramp.release(root, key)
                        raise
                for run in runs:
                    run.result()
    ws = Workspace.open(root)
    return {key: round_metrics(ws, key) for key in ws.campaign.videos}


def run_campaign(
    workspace: str, rounds: int | None = None, serial: bool = False
) -> dict[str, dict | None]:
    """:func:`campaign` started in this process with the workspace's ``campaign.heartbeat_s``
    for its own run too: what ``hvsa campaign run`` and ``flows/campaign.py`` start."""
    root = str(Path(workspace).resolve())
    with Heartbeats(Workspace.open(root).cfg.campaign.heartbeat_s)():
        return campaign(root, rounds, serial)


@flow(name="hvsa-campaign-inbox")
def scan_and_run(workspace: str, inbox: str, rounds: int | None = None) -> list[str]:
    """Add new inbox videos to the campaign, then run its rounds; returns the added keys."""
    added = add_videos(Path(workspace), Path(inbox))
    get_run_logger().info("new videos: %s", ", ".join(added) or "none")
    campaign(workspace, rounds)
    return added


def main(argv: list[str] | None = None) -> None:
    """``python flows/campaign.py WORKSPACE [--rounds N]``."""
    parser = argparse.ArgumentParser(description="Run a campaign's rounds as a Prefect flow")
    parser.add_argument("workspace")
    parser.add_argument("--rounds", type=int, help="at most this many rounds (default: until done)")
    parser.add_argument("--serial", action="store_true",
                        help="one video's round after another (for comparison)")  # fmt: skip
    args = parser.parse_args(argv)
    for key, metrics in run_campaign(args.workspace, args.rounds, args.serial).items():
        print(key, metrics and {k: metrics[k] for k in ("round", "clicks_total", "miou")})


def schedule_main(argv: list[str] | None = None) -> None:
    """``python flows/schedule.py WORKSPACE INBOX --cron "0 * * * *"``: serve the inbox flow on
    a schedule (needs a Prefect server: the embedded API has no scheduler)."""
    parser = argparse.ArgumentParser(description="Add inbox videos to a campaign on a schedule")
    parser.add_argument("workspace")
    parser.add_argument("inbox", help="folder that new videos (folders or files) are dropped into")
    parser.add_argument("--cron", default="0 * * * *", help="when to look (default: hourly)")
    parser.add_argument("--rounds", type=int, help="rounds per scheduled run (default: until done)")
    args = parser.parse_args(argv)
    scan_and_run.serve(
        name="campaign-inbox",
        cron=args.cron,
        parameters={"workspace": str(Path(args.workspace).resolve()), "inbox": args.inbox,
                    "rounds": args.rounds},
    )  # fmt: skip
