"""A human round: the flow pauses at `annotate` and resumes when labels arrive from elsewhere."""

import json
import time

import pytest

from hvsa.annotation.annotator import OracleAnnotator
from hvsa.annotation.ledger import Ledger
from hvsa.annotation.submission import write_submission
from hvsa.app.resume import paused_run_of
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.workspace import Workspace
from tests.conftest import selected_samples, start_flow, write_fast_params

pytestmark = pytest.mark.slow  # a Prefect flow paused and resumed


PAUSE_WAIT_S = 240


def test_flow_pauses_for_human_labels_and_resumes(
    prefect_api, tiny_videos, pretrained, tmp_path, capsys
):
    from prefect.flow_runs import resume_flow_run

    from hvsa.cli import main

    params = write_fast_params(
        tmp_path / "params.yaml", **{"annotation.annotator": "human", "annotation.poll_s": 1}
    )
    ws = init_workspace(tmp_path / "ws", "people", pretrained, {"cam": str(tiny_videos[0])}, params)
    flow = start_flow(ws.root, prefect_api, 1)
    try:
        deadline = time.time() + PAUSE_WAIT_S
        run = None
        while run is None and time.time() < deadline and flow.poll() is None:
            time.sleep(1)
            run = paused_run_of(ws.root)
        assert run is not None, "the flow never paused for labels"
        assert not (ws.root / "data" / "cam" / "r1" / "annotations.parquet").exists()
        # the status says what the video waits for, and the last finished round's numbers
        capsys.readouterr()
        assert main(["campaign", "status", str(ws.root)]) == 0
        n = len(selected_samples(Workspace.open(ws.root), "cam", 1)[1])
        line = capsys.readouterr().out
        assert f"waiting for labels (0 of {n} in)" in line and "after round 0" in line, line

        # the annotator's side: label the selected samples and hand them in
        workspace = Workspace.open(ws.root)
        video = workspace.load_video("cam")
        samples, selected = selected_samples(workspace, "cam", 1)
        annotations = OracleAnnotator(2.0).annotate(video, samples, selected["sample_id"].tolist())
        for a in annotations:
            a.annotator, a.tool = "alice", "polygon"
        write_submission(ws.root / "inbox" / "cam", 1, annotations)
        resume_flow_run(
            run.id, run_input={"video": "cam", "round": 1, "submission": "inbox/cam/r1.npz"}
        )
        output, _ = flow.communicate(timeout=PAUSE_WAIT_S)
    finally:
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode == 0, output[-2000:]
    metrics = json.loads((ws.root / "data" / "cam" / "r1" / "metrics.json").read_text())
    assert metrics["clicks_total"] == sum(a.clicks.total for a in annotations)
    with Ledger(ws.root / "data" / "ledger.sqlite") as ledger:
        events = ledger.frame()
    assert len(events) == len(selected)
    assert set(events["annotator"]) == {"alice"}
