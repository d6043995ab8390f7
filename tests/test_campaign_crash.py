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
