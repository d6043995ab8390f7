"""Videos of a campaign run side by side: each in a flow run of its own, pausing for its own
labels. Three videos wait for people; video b's labels come in through the app's HTTP API, and
b goes on to select its round 2 while a (and c) still wait for round 1. The app lists and hands
out the rounds the longest waiting first."""

import base64
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hvsa.annotation.annotator import OracleAnnotator
from hvsa.app.resume import paused_runs
from hvsa.app.server import create_app
from hvsa.app.store import app_store
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.workspace import Workspace
from tests.conftest import selected_samples, start_flow, write_fast_params

pytestmark = pytest.mark.slow  # a campaign flow with three paused video runs

WAIT_S = 300


def _wait(what, check, flow):
    deadline = time.time() + WAIT_S
    while not check():
        assert flow.poll() is None, (
            f"the flow ended while waiting for {what}: " + (flow.communicate()[0][-3000:])
        )
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def _paused_videos(root) -> set[str]:
    return {
        run.parameters.get("video")
        for run in paused_runs()
        if run.parameters.get("workspace") == str(root)
    }


def _hand_in(client, token, root, video):
    """Every sample of the video's round 1, as the oracle draws it, through the HTTP API."""
    ws = Workspace.open(root)
    samples, _ = selected_samples(ws, video, 1)
    frames = ws.load_video(video)
    auth = {"Authorization": f"Bearer {token}"}
    while True:
        answer = client.post(f"/api/rounds/{video}/1/next", headers=auth).json()
        if answer["sample_id"] is None:
            return
        (a,) = OracleAnnotator(2.0).annotate(frames, samples, [answer["sample_id"]])
        body = {
            "labels": base64.b64encode(np.ascontiguousarray(a.labels).tobytes()).decode(),
            "clicks_by_tool": {"polygon": 4}, "active_s": 3.0, "started": 1.0, "finished": 2.0,
        }  # fmt: skip
        done = client.post(f"/api/rounds/{video}/1/samples/{answer['sample_id']}",
                           json=body, headers=auth)  # fmt: skip
        assert done.status_code == 200, done.text
        if done.json().get("round_complete"):
            assert done.json()["resumed_flow_run"], "no run of video b was resumed"
            return


def _selected_at(root, video, round_no) -> float:
    return (root / "data" / video / f"r{round_no}" / "selected.parquet").stat().st_mtime


def _listed(client, auth) -> list[tuple[str, int]]:
    return [(r["video"], r["round"]) for r in client.get("/api/rounds", headers=auth).json()]


def test_a_video_goes_on_to_its_next_round_while_another_waits_for_people(
    prefect_api, tiny_videos, pretrained, tmp_path
):
    # one step at a time: the third video's run starts only once a round before it is open
    # (the opening ramp), whatever the machine's cores
    params = write_fast_params(
        tmp_path / "params.yaml",
        **{"annotation.annotator": "human", "annotation.poll_s": 1, "campaign.parallel_steps": 1},
    )
    videos = {"a": str(tiny_videos[0]), "b": str(tiny_videos[1]), "c": str(tiny_videos[2])}
    ws = init_workspace(tmp_path / "ws", "many", pretrained, videos, params)
    token = app_store(ws).add_annotator("alice")
    flow = start_flow(ws.root, prefect_api, 2)
    try:
        _wait("three runs paused for round 1", lambda: _paused_videos(ws.root) == set(videos),
              flow)  # fmt: skip
        client = TestClient(create_app(ws.root))
        auth = {"Authorization": f"Bearer {token}"}
        # the rounds are listed, and handed out, the longest waiting first
        listed = [r["video"] for r in client.get("/api/rounds", headers=auth).json()]
        assert sorted(listed) == sorted(videos)
        assert listed == sorted(listed, key=lambda v: _selected_at(ws.root, v, 1))
        oldest = client.post("/api/next", headers=auth).json()
        assert (oldest["video"], oldest["round"]) == (listed[0], 1)
        _hand_in(client, token, ws.root, "b")
        b2 = ws.root / "data" / "b" / "r2" / "selected.parquet"
        _wait("video b's round 2 selection", b2.is_file, flow)
        _wait("video b's round 2 open", lambda: ("b", 2) in _listed(client, auth), flow)
        # b's new round waits the shortest: the others' first rounds come before it
        assert _listed(client, auth)[-1] == ("b", 2)
        if listed[0] == "b":  # the sample held above went in with b's round
            listed.remove("b")
        nxt = client.post("/api/next", headers=auth).json()
        assert (nxt["video"], nxt["round"]) == (listed[0], 1), "not the longest-waiting round"
        # a has not moved: its round 1 still waits for labels, and its run is paused
        assert not (ws.root / "data" / "a" / "r1" / "annotations.parquet").exists()
        assert not (ws.root / "data" / "a" / "r2").exists()
        assert {"a", "c"} <= _paused_videos(ws.root)
        _wait("video b paused for round 2", lambda: "b" in _paused_videos(ws.root), flow)
        campaign = Workspace.open(ws.root).campaign.videos
        assert (campaign["a"].round, campaign["b"].round, campaign["c"].round) == (1, 2, 1)
    finally:
        flow.kill()
        flow.communicate()
