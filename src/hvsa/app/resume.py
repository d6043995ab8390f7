"""Wake the campaign flow run that waits for a round's labels.

The campaign flow pauses with ``wait_for_input`` (``hvsa.campaign.flow``) until it is resumed
with a :class:`~hvsa.campaign.flow.RoundLabels`: the round's video, number and submission
path. This is the one place where the app talks to Prefect; the Prefect API comes from the
environment (``PREFECT_API_URL``), as for the flow.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
# the waits between tries of a resume sent in the background (seconds)
RESUME_RETRY_S = (1.0, 3.0, 10.0)


def paused_runs() -> list:
    """Every paused flow run the Prefect API knows of."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            )
        )


def paused_run_of(workspace: Path, video: str | None = None):
    """The paused flow run of ``workspace`` that waits for ``video`` (found by their
    parameters: a campaign runs each video in a run of its own), or None. Without ``video``,
    any paused run of the workspace."""
    root = Path(workspace).resolve()
    for run in paused_runs():
        params = run.parameters or {}
        where = params.get("workspace")
        if where is None or Path(where).resolve() != root:
            continue
        if video is None or params.get("video") in (None, video):
            return run
    return None


def resume_waiting_run(workspace: Path, video: str, round_no: int, submission: str) -> str | None:
    """Resume the paused run of ``workspace`` that waits for ``video``; its id, or None if no
    such run is paused.

    The flow itself checks that the input names the video and round it waits for, and pauses
    again if not.
    """
    from prefect.flow_runs import resume_flow_run

    run, labels = _waiting(workspace, video, round_no, submission)
    if run is None:
        return None
    resume_flow_run(run.id, run_input=labels)
    return str(run.id)


def _waiting(workspace: Path, video: str, round_no: int, submission: str) -> tuple:
    """The paused run that waits for ``video`` (or None) and the input that resumes it."""
    from hvsa.campaign.flow import RoundLabels

    run = paused_run_of(workspace, video)
    labels = RoundLabels(video=video, round=round_no, submission=submission).model_dump()
    return run, labels


def resume_in_background(
    workspace: Path, video: str, round_no: int, submission: str
) -> str | None:
    """As :func:`resume_waiting_run`, but the resume itself is sent from a thread: the paused
    run is found before the answer (its id, or None if none waits), and the person who handed
    the round's last sample in does not wait for Prefect to take the new state.

    Why: on a busy machine Prefect's server took 2.0-2.4 s for a resume now and then (2 of 24
    rounds timed, 2026-12-05, 2 cores; ``benchmarks/campaign_scale.py``), all of it the
    annotator's wait for the page's answer. The labels are on disk before this is called: a
    resume that fails for a passing reason is tried again (``RESUME_RETRY_S``); one Prefect
    refuses (the run timed out, the input refused) is not; a run no longer paused took an
    earlier try; a last failure is logged with the way to resume by hand. For the app's process
    only: a command that exits at once would end the thread with it (``hvsa annotate import``
    resumes in the foreground)."""
    from prefect.exceptions import FlowPauseTimeout, NotPausedError
    from prefect.flow_runs import resume_flow_run

    run, labels = _waiting(workspace, video, round_no, submission)
    if run is None:
        return None
    by_hand = f"the labels are in {submission}: resume it with video={video!r}, round={round_no}"

    def send() -> None:
        sent = time.perf_counter()
        for attempt, wait in enumerate((*RESUME_RETRY_S, None)):
            try:
                resume_flow_run(run.id, run_input=labels)
                log.info("%s round %d: flow run %s resumed in %.2f s (try %d)", video, round_no,
                         run.id, time.perf_counter() - sent, attempt + 1)  # fmt: skip
                return
            except NotPausedError:  # an earlier try went through, its answer lost
                if attempt:
                    log.info("%s round %d: flow run %s resumed in %.2f s (try %d: a try before "
                             "went through)", video, round_no, run.id,
                             time.perf_counter() - sent, attempt + 1)  # fmt: skip
                    return
                log.error("%s round %d: flow run %s was no longer paused; %s",
                          video, round_no, run.id, by_hand)  # fmt: skip
                return
            except (FlowPauseTimeout, RuntimeError) as exc:  # Prefect refused: no retry helps
                log.error("%s round %d: flow run %s refused the resume (%s); %s",
                          video, round_no, run.id, exc, by_hand)  # fmt: skip
                return
            except Exception as exc:  # noqa: BLE001 - a passing failure: tried again, then logged
                if wait is None:
                    log.error(
                        "%s round %d: the paused flow run %s could not be resumed (%s: %s); %s",
                        video, round_no, run.id, type(exc).__name__, exc, by_hand,
                    )  # fmt: skip
                    return
                log.warning("%s round %d: resume try %d failed (%s), again in %.0f s",
                            video, round_no, attempt + 1, exc, wait)  # fmt: skip
                time.sleep(wait)

    # not a daemon: an app stopped right after a hand-in still sends the resume (waiting up to
    # the retries' 14 s when Prefect is down)
    threading.Thread(target=send, name=f"resume-{video}-r{round_no}", daemon=False).start()
    return str(run.id)


def resume_handed_in(workspace: Path) -> list[tuple[str, int, str]]:
    """Resume (in the background) every paused run whose round is handed in but not yet taken
    in — the labels in ``inbox/V/rN.npz``, the round's ``annotate`` not run: a resume lost with
    an app stopped before it went out, or one that never went through. (video, round, run id)
    of each. Safe to repeat: the flow checks the video, the round and the file, and a run that
    took an earlier resume is not paused any more. ``hvsa annotate serve`` calls it on start."""
    from hvsa.app.work import handed_in_rounds
    from hvsa.campaign.workspace import Workspace

    ws = Workspace.open(workspace)
    out = []
    for key, round_no, npz in handed_in_rounds(ws):
        run = resume_in_background(ws.root, key, round_no, str(npz.relative_to(ws.root)))
        if run is not None:
            out.append((key, round_no, run))
    return out
