"""A campaign's heavy steps on a Dask cluster (``campaign.task_runner: local``): two videos'
fine-tuning runs in two worker processes at the same time, recorded as Prefect task runs."""

import pytest

from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.workspace import Workspace
from hvsa.config import load_config
from hvsa.errors import HvsaError
from tests.conftest import REPO, start_flow, write_fast_params

pytestmark = pytest.mark.slow  # a local Dask cluster and a campaign flow


def _task_runs(names: list[str]) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=names))
        )


def test_two_videos_fine_tune_at_the_same_time_on_a_local_dask_cluster(
    prefect_api, tiny_videos, pretrained, tmp_path
):
    pytest.importorskip("prefect_dask")
    params = write_fast_params(
        tmp_path / "params.yaml",
        **{"campaign.task_runner": "local", "campaign.dask_workers": 2, "finetune.steps": 40},
    )
    videos = {"a": str(tiny_videos[0]), "b": str(tiny_videos[1])}
    ws = init_workspace(tmp_path / "ws", "cluster", pretrained, videos, params)
    flow = start_flow(ws.root, prefect_api, 1)
    output, _ = flow.communicate(timeout=600)
    assert flow.returncode == 0, output[-3000:]
    assert "heavy steps on the Dask cluster at tcp://127.0.0.1:" in output
    campaign = Workspace.open(ws.root).campaign.videos
    assert (campaign["a"].round, campaign["b"].round) == (1, 1)
    runs = {r.name: r for r in _task_runs(["finetune@a", "finetune@b"]) if r.state.is_completed()}
    assert set(runs) == {"finetune@a", "finetune@b"}
    a, b = runs["finetune@a"], runs["finetune@b"]
    overlap = min(a.end_time, b.end_time) - max(a.start_time, b.start_time)
    assert overlap.total_seconds() > 0, (a.start_time, a.end_time, b.start_time, b.end_time)
    # each in a Dask worker of its own, not in the flow's process
    processes = {_process(a.id), _process(b.id)}
    assert len(processes) == 2 and flow.pid not in processes, (processes, flow.pid)


def _process(task_run_id) -> int:
    """The process a task run's stage ran in, from its log line in the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id])))
    (line,) = [log.message for log in logs if " ran on " in log.message]
    return int(line.rsplit("process ", 1)[1])


def test_a_task_runner_that_is_not_one_is_refused_in_one_line():
    with pytest.raises(HvsaError, match="a Dask scheduler's address"):
        load_config(REPO / "params.yaml", {"campaign.task_runner": "dask"})
