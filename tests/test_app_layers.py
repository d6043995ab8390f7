"""Class layers for people: a human campaign whose rounds are labelled through the app's HTTP API
— whole frames, then class layers drawn or marked absent — through Prefect and DVC; the ledger,
the audit and rollback across the layer round."""

import base64
import json
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from hvsa.annotation.ledger import Ledger
from hvsa.app.resume import paused_run_of
from hvsa.app.server import create_app
from hvsa.app.store import app_store
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.versioning import dvc
from hvsa.campaign.workspace import Workspace
from hvsa.cli import main
from hvsa.data.video import VOID
from tests.conftest import start_flow, write_fast_params

pytestmark = pytest.mark.slow  # a Prefect flow paused twice, the app resuming it

WAIT_S = 300


def _wait_for_round(root, flow, round_no):
    """Until the flow pauses for ``round_no``'s labels (its selection is out)."""
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        assert flow.poll() is None, flow.communicate()[0][-3000:]
        ws = Workspace.open(root)
        here = ws.round_dir("cam", round_no)
        if (here / "selected.parquet").is_file() and paused_run_of(root) is not None:
            return
        time.sleep(0.5)
    raise AssertionError(f"the flow never paused for round {round_no}")


def _label_round(client, token, root, absent: int = 0) -> list[dict]:
    """Label every task of the open round as the page would: the truth of each sample; for a
    class layer that class's pixels, or (the first ``absent`` layers) "absent"."""
    auth = {"Authorization": f"Bearer {token}"}
    ws = Workspace.open(root)
    truth = ws.load_video("cam").labels
    (open_round,) = client.get("/api/rounds", headers=auth).json()
    base = f"/api/rounds/cam/{open_round['round']}"
    sent = []
    while (task := client.post(base + "/next", headers=auth).json()).get("sample_id") is not None:
        b = task["box"]
        frame = truth[task["frame"]][b["y0"] : b["y1"], b["x0"] : b["x1"]]
        region = client.get(f"{base}/samples/{task['sample_id']}/region.png", headers=auth)
        assert region.status_code == 200
        if task["layer"] is None:
            labels, clicks = frame, {"polygon": 9, "superpixel": 1}
        elif absent > 0:
            labels, clicks, absent = np.full(frame.shape, VOID, np.uint8), {"absent": 1}, absent - 1
        else:
            cls = task["layer"]["class_id"]
            labels = np.where(frame == cls, cls, VOID).astype(np.uint8)
            clicks = {"polygon": 7, "eraser": 1}
        body = {"labels": base64.b64encode(labels.tobytes()).decode(), "clicks_by_tool": clicks,
                "active_s": 3.0, "started": time.time() - 5, "finished": time.time()}  # fmt: skip
        answer = client.post(f"{base}/samples/{task['sample_id']}", headers=auth, json=body)
        assert answer.status_code == 200, answer.text
        sent.append({"task": task, "clicks": clicks, "answer": answer.json()})
    assert sent and sent[-1]["answer"]["round_complete"], task
    assert sent[-1]["answer"]["resumed_flow_run"], sent[-1]["answer"]
    return sent


def test_people_draw_class_layers_in_the_app(
    prefect_api, tiny_videos, pretrained, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the app resumes the flow through it
    params = write_fast_params(
        tmp_path / "params.yaml",
        **{"annotation.annotator": "human", "annotation.poll_s": 1, "samples.granularity": "frame",
           "loop.budget": 2, "selection.strategy": "coverage", "layers.enabled": True,
           "layers.per_round": 3, "fusion.calibration_probes": 2},
    )  # fmt: skip
    ws = init_workspace(tmp_path / "ws", "people", pretrained, {"cam": str(tiny_videos[0])}, params)
    token = app_store(Workspace.open(ws.root)).add_annotator("lea")
    client = TestClient(create_app(ws.root))
    flow = start_flow(ws.root, prefect_api, 2)
    try:
        _wait_for_round(ws.root, flow, 1)
        frames = _label_round(client, token, ws.root)
        assert all(s["task"]["layer"] is None for s in frames)
        _wait_for_round(ws.root, flow, 2)
        layers = _label_round(client, token, ws.root, absent=1)
        output, _ = flow.communicate(timeout=WAIT_S)
    finally:
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode == 0, output[-3000:]

    selected = pd.read_parquet(ws.round_dir("cam", 2) / "selected.parquet")
    assert (selected["kind"] == "layer").all() and len(selected) == 3
    assert [s["task"]["layer"]["class_id"] for s in layers] == selected["class_id"].tolist()
    with Ledger(ws.root / "data" / "ledger.sqlite") as ledger:
        events = ledger.frame(kind="annotation", round=2)
    assert len(events) == 3
    assert (events["geometry"].map(lambda g: g["kind"]) == "layer").all()
    assert (events["annotator"] == "lea").all()
    for event, sent in zip(events.itertuples(), layers, strict=True):  # the page's counts
        assert event.clicks == sum(sent["clicks"].values())
        assert {k: event.clicks_detail[k] for k in sent["clicks"]} == sent["clicks"]
        assert event.clicks_detail["source"] == "app"
    assert events["tool"].tolist()[0] == "absent"
    metrics = json.loads((ws.round_dir("cam", 2) / "metrics.json").read_text())
    assert metrics["clicks_total"] == sum(sum(s["clicks"].values()) for s in frames + layers)
    assert json.loads((ws.round_dir("cam", 2) / "finetune.json").read_text())["trained"] is False

    # the audit finds a pixel a layer drew, and its price
    drawn = next(s for s in layers[1:] if s["task"]["layer"] is not None)
    human = np.load(ws.round_dir("cam", 2) / "human.npz")
    frame = drawn["task"]["frame"]
    ys, xs = np.nonzero(human["layers"][frame] == drawn["task"]["layer"]["class_id"])
    own = human["labels"][frame][ys, xs] == VOID
    if own.any():
        x, y = int(xs[own][0]), int(ys[own][0])
        assert main(["audit", str(ws.video_dir("cam")), "--frame", str(frame), "--pixel",
                     f"{x},{y}", "--json"]) == 0  # fmt: skip
        answer = json.loads(capsys.readouterr().out)
        assert answer["annotator"] == "lea" and answer["round"] == 2
        assert answer["geometry"]["kind"] == "layer"
    # and rollback goes back across the layer round, byte for byte
    assert main(["rollback", str(ws.video_dir("cam")), "--to-round", "1"]) == 0
    assert not ws.round_dir("cam", 2).exists()
    assert Workspace.open(ws.root).campaign.videos["cam"].round == 1
    # round 2 is to be labelled anew: its old hand-in left the inbox, the app forgot its holds
    assert not (ws.root / "inbox" / "cam" / "r2.npz").exists()
    assert (ws.root / "inbox" / "cam" / "r1.npz").is_file()
    assert not app_store(Workspace.open(ws.root)).is_closed("cam", 2)
    assert json.loads(dvc(ws.root, "status", "--json")) == {}
    # the ledger, rollback event included, still verifies against the rounds that remain
    assert main(["audit", str(ws.video_dir("cam")), "--verify"]) == 0
    assert "ledger verified" in capsys.readouterr().out
