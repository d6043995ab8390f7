"""A flow killed during `finetune` and started again: nothing finished is redone or lost."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hvsa.annotation.ledger import Ledger
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.versioning import dvc
from tests.conftest import REPO, write_fast_params

pytestmark = pytest.mark.slow  # a campaign flow killed and restarted

WAIT_S = 240


def _flow(root, api_url):
    env = dict(os.environ, PREFECT_API_URL=api_url)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    return subprocess.Popen(
        [sys.executable, str(REPO / "flows" / "campaign.py"), str(root), "--rounds", "1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: the kill takes DVC and the stage too
    )  # fmt: skip


def _finetune_running(r1) -> bool:
    """Annotation recorded, the network not yet written: fine-tuning (150 steps) is under way."""
    return (r1 / "annotations.parquet").is_file() and not (r1 / "model.pt").exists()


def test_killed_during_finetune_then_restarted(prefect_api, tiny_videos, pretrained, tmp_path):
    params = write_fast_params(tmp_path / "params.yaml", **{"finetune.steps": 150})
    ws = init_workspace(tmp_path / "ws", "crash", pretrained, {"cam": str(tiny_videos[0])}, params)
    r1 = ws.root / "data" / "cam" / "r1"
    flow = _flow(ws.root, prefect_api)
    try:
        deadline = time.time() + WAIT_S
        while not _finetune_running(r1) and time.time() < deadline and flow.poll() is None:
            time.sleep(0.5)
        assert _finetune_running(r1), "finetune never started"
        time.sleep(2)
        os.killpg(flow.pid, signal.SIGKILL)
        flow.wait(30)
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGKILL)
    assert not (r1 / "model.pt").exists()  # killed before fine-tuning finished
    finished = ("selected.parquet", "auto.json", "annotations.parquet", "human.npz")
    stamps = {name: (r1 / name).stat().st_mtime_ns for name in finished}
    with Ledger(ws.root / "data" / "ledger.sqlite") as ledger:
        before = ledger.frame()
    assert len(before) == 6

    again = _flow(ws.root, prefect_api)
    try:
        output, _ = again.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(again.pid, signal.SIGKILL)
        output, _ = again.communicate()
        pytest.fail(f"the restarted flow did not finish in {WAIT_S} s: {output[-3000:]}")
    assert again.returncode == 0, output[-2000:]
    assert {name: (r1 / name).stat().st_mtime_ns for name in finished} == stamps  # not rerun
    with Ledger(ws.root / "data" / "ledger.sqlite") as ledger:
        after = ledger.frame()
    assert after["event_id"].tolist() == before["event_id"].tolist()  # none lost, none doubled
    assert (r1 / "model.pt").is_file()
    metrics = json.loads((r1 / "metrics.json").read_text())
    assert metrics["clicks_total"] == int(after["clicks"].sum())
    assert json.loads(dvc(ws.root, "status", "--json")) == {}


# what identifies an event, not when it was made
EVENT = ["round", "sample_id", "frame", "annotator", "tool", "clicks", "label_hash",
         "idempotency_key"]  # fmt: skip


def _two_rounds(root, api_url, crash=None) -> subprocess.CompletedProcess:
    """The campaign flow until its two rounds are done (``loop.rounds``), in its own process
    with a fixed thread count; ``crash``: the ``HVSA_CRASH_AT`` point it is killed at."""
    env = dict(os.environ, PREFECT_API_URL=api_url, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env.pop("HVSA_CRASH_AT", None)
    if crash:
        env["HVSA_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, str(REPO / "flows" / "campaign.py"), str(root)], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=WAIT_S,
    )  # fmt: skip


def _outcome(root) -> dict:
    rounds = {}
    for r in (1, 2):
        folder = root / "data" / "cam" / f"r{r}"
        metrics = json.loads((folder / "metrics.json").read_text())
        labels = {p.name: p.read_bytes() for p in sorted((folder / "labels").iterdir())}
        rounds[r] = (metrics["clicks_total"], metrics["miou"], labels)
    with Ledger(root / "data" / "ledger.sqlite") as ledger:
        events = ledger.frame()[EVENT]
    return {"rounds": rounds, "events": events}


def _campaign(tmp_path, tiny_videos, pretrained, name):
    params = write_fast_params(tmp_path / f"{name}.yaml", **{"loop.rounds": 2})
    videos = {"cam": str(tiny_videos[0])}
    return init_workspace(tmp_path / name, "crash", pretrained, videos, params)


@pytest.fixture(scope="module")
def uninterrupted(prefect_api, tiny_videos, pretrained, tmp_path_factory):
    ws = _campaign(tmp_path_factory.mktemp("whole"), tiny_videos, pretrained, "whole")
    done = _two_rounds(ws.root, prefect_api)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return _outcome(ws.root)


@pytest.mark.parametrize(
    "point", ["select-done:2", "annotate-recorded:2", "finetune-done:2", "labels-done:2"]
)
def test_killed_campaign_round_resumes_as_if_never_interrupted(
    point, uninterrupted, prefect_api, tiny_videos, pretrained, tmp_path
):
    """Killed after a stage's outputs are written but before DVC records them, or after the
    ledger recorded a round's events but before the stage wrote its state: the restarted flow
    redoes what was not recorded and ends where an uninterrupted campaign ends."""
    import pandas as pd

    ws = _campaign(tmp_path, tiny_videos, pretrained, "killed")
    killed = _two_rounds(ws.root, prefect_api, crash=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert not (ws.root / "data" / "cam" / "r2" / "metrics.json").is_file() or point.startswith(
        "labels"
    )
    again = _two_rounds(ws.root, prefect_api)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    mine = _outcome(ws.root)
    for r in (1, 2):
        assert mine["rounds"][r] == uninterrupted["rounds"][r], f"round {r}"
    pd.testing.assert_frame_equal(mine["events"], uninterrupted["events"])
    assert json.loads(dvc(ws.root, "status", "--json")) == {}


def test_the_mlflow_store_is_made_whole_or_not_at_all(tmp_path):
    """A process killed while MLflow built its schema left half a database that no later
    process could open; the store is built under another name and renamed when complete."""
    import mlflow

    from hvsa.campaign.tracking import ensure_store, local_uri

    (tmp_path / "mlflow.db.creating").write_bytes(b"half a database, killed mid-migration")
    ensure_store(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]
    mlflow.set_tracking_uri(local_uri(tmp_path))
    assert [e.name for e in mlflow.search_experiments()] == ["Default"]
