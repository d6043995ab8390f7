"""Wake the campaign flow run that waits for a round's labels.

The campaign flow pauses with ``wait_for_input`` (``hvsa.campaign.flow``) until it is resumed
with a :class:`~hvsa.campaign.flow.RoundLabels`: the round's video, number and submission
path. This is the one place where the app talks to Prefect; the Prefect API comes from the
environment (``PREFECT_API_URL``), as for the flow.
"""

from __future__ import annotations

from pathlib import Path


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

    from hvsa.campaign.flow import RoundLabels

    labels = RoundLabels(video=video, round=round_no, submission=submission)
    run = paused_run_of(workspace, video)
    if run is None:
        return None
    resume_flow_run(run.id, run_input=labels.model_dump())
    return str(run.id)
