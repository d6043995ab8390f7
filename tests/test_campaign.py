"""Campaign workspaces with real git and DVC: rounds advance by `dvc repro` and are versioned."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from hvsa.annotation.ledger import Ledger
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.versioning import dvc, git
from hvsa.campaign.workspace import STAGES, Workspace, lock_entries
from tests.conftest import write_fast_params

pytestmark = pytest.mark.slow  # real git, DVC, Prefect and MLflow


@pytest.fixture(scope="module")
def two_rounds(tiny_videos, pretrained, tmp_path_factory, prefect_api):
    """Two rounds of the real Prefect flow over real DVC stages in a git+DVC workspace: the
    first as the flow itself, the second as ``hvsa campaign run`` starts it (``run_campaign``,
    the workspace's heartbeat setting around the campaign's run)."""
    from hvsa.campaign.flow import campaign, run_campaign

    base = tmp_path_factory.mktemp("campaign")
    params = write_fast_params(base / "params.yaml")
    ws = init_workspace(base / "ws", "test", pretrained, {"cam": str(tiny_videos[0])}, params)
    first = campaign(str(ws.root), rounds=1)
    second = run_campaign(str(ws.root), rounds=1)
    return ws.root, first, second


def test_two_rounds_run_through_dvc(two_rounds):
    root, first, second = two_rounds
    assert first["cam"]["round"] == 1 and second["cam"]["round"] == 2
    assert second["cam"]["clicks_total"] > first["cam"]["clicks_total"] > 0
    assert 0 < second["cam"]["miou_estimate"] <= 1  # the stop rule where there is no truth
    status = json.loads(dvc(root, "status", "--json"))
    assert status == {}  # everything up to date: `dvc repro` has nothing left to do
    # the video's stages and DVC's record of them are the video's own files
    recorded = lock_entries(root / "data" / "cam" / "dvc.lock")
    assert set(recorded) == set(STAGES)
    assert not (root / "dvc.yaml").exists() and not (root / "dvc.lock").exists()
    for name in ("fusion.json", "selected.parquet", "annotations.parquet", "human.npz",
                 "model.pt", "metrics.json"):  # fmt: skip
        assert (root / "data" / "cam" / "r2" / name).is_file()
        assert (root / "data" / "cam" / "r1" / name).is_file()


def test_a_rounds_view_is_kept_beside_dvc_and_made_again_when_lost(two_rounds):
    """The prediction and belief a round selects from are no DVC output (hundreds of MB a
    round): they are kept in memory and in .hvsa/views/, and made again, the same numbers,
    from the round's versioned network and human labels where the store lost them."""
    import torch

    from hvsa.campaign.stages import inputs

    root, _, _ = two_rounds
    ws = Workspace.open(root)
    r1 = ws.round_dir("cam", 1)
    assert not (r1 / "belief.npz").exists() and "belief" not in (
        root / "data" / "cam" / "dvc.lock"
    ).read_text()
    inputs.save_views()  # as the process does when it ends
    stored = sorted((root / inputs.VIEWS / "cam").glob("*.npz"))
    assert {p.name.split("-")[0] for p in stored} == {"pred", "belief"}
    inputs._MEMO.clear()  # as a new process finds it
    from_store = inputs.read_view(ws, "cam", r1)
    for path in stored:
        path.unlink()
    inputs._MEMO.clear()
    made_again = inputs.read_view(ws, "cam", r1)
    assert torch.equal(made_again.pred.probs, from_store.pred.probs)
    assert torch.equal(made_again.belief.probs, from_store.belief.probs)
    assert made_again.fusion == from_store.fusion
    inputs.save_views()
    assert len(list((root / inputs.VIEWS / "cam").glob("*.npz"))) == 2  # stored again


def test_each_round_is_a_tagged_commit(two_rounds):
    root, _, _ = two_rounds
    log = git(root, "log", "--format=%s").splitlines()
    assert log[:2] == ["round: cam r2", "round: cam r1"]
    tags = git(root, "tag").split()
    assert any("cam.r1" in t for t in tags) and any("cam.r2" in t for t in tags)
    assert git(root, "status", "--porcelain").strip() == ""


def test_ledger_holds_both_rounds_once(two_rounds):
    root, _, second = two_rounds
    with Ledger(root / "data" / "ledger.sqlite") as ledger:
        events = ledger.frame()
    assert sorted(events["round"].unique()) == [1, 2]
    assert events.groupby("round").size().tolist() == [6, 6]
    assert events["clicks"].sum() == second["cam"]["clicks_total"]
    assert events["idempotency_key"].is_unique
    table = pd.read_parquet(root / "data" / "cam" / "r2" / "annotations.parquet")
    assert set(table["event_id"]) <= set(events["event_id"])


def test_dvc_repro_alone_reruns_nothing_when_done(two_rounds):
    root, _, _ = two_rounds
    out = dvc(root, "repro", "-P")
    assert "didn't change, skipping" in out or "up to date" in out
    assert "Running stage" not in out


def test_stage_error_is_one_line(two_rounds):
    root, _, _ = two_rounds
    proc = subprocess.run(
        [sys.executable, "-m", "hvsa.campaign.stages.select", "nope"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "hvsa select: error: video 'nope' is not in campaign test (cam)"
    ]


def test_workspace_layout(two_rounds):
    root, _, _ = two_rounds
    ws = Workspace.open(root)
    assert ws.campaign.videos["cam"].round == 2
    remote = dvc(root, "remote", "list")
    assert "local" in remote
    dvc(root, "push")  # the default local remote works out of the box


def test_mlflow_has_a_nested_run_per_round_and_the_current_model(two_rounds):
    import mlflow
    from mlflow import MlflowClient

    from hvsa.campaign.tracking import local_uri

    root, _, second = two_rounds
    mlflow.set_tracking_uri(local_uri(root))
    experiment = mlflow.get_experiment_by_name("test")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    rounds = sorted(
        (r for r in runs if r.data.tags.get("hvsa.level") == "round"),
        key=lambda r: int(r.data.tags["hvsa.round"]),
    )
    parents = [r for r in runs if r.data.tags.get("hvsa.level") == "video"]
    assert len(rounds) == 2 and len(parents) == 1
    for run in rounds:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert {"miou", "clicks_round", "clicks_total", "labelled_fraction"} <= set(
            run.data.metrics
        )
        assert len(run.data.tags["git.commit"]) == 40
        artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
        assert {"selected_samples.json", "overlays"} <= artifacts
    assert rounds[1].data.metrics["clicks_total"] == second["cam"]["clicks_total"]
    assert rounds[1].data.tags["git.commit"] == git(root, "rev-parse", "HEAD").strip()
    current = MlflowClient().get_model_version_by_alias("test-cam", "current")
    assert current.tags["hvsa.round"] == "2"
    model = mlflow.pytorch.load_model("models:/test-cam@current")
    assert model.arch == "lraspp_mobilenet_v3_large"


def test_campaign_status_and_init_errors(two_rounds, tiny_videos, pretrained, tmp_path, capsys):
    from hvsa.cli import main

    root, _, _ = two_rounds
    assert main(["campaign", "status", str(root)]) == 0
    assert "cam: round 2" in capsys.readouterr().out
    assert main(["campaign", "init", str(root), "--model", str(pretrained),
                 "--video", f"cam={tiny_videos[0]}"]) == 2  # fmt: skip
    assert "already holds a campaign" in capsys.readouterr().err
    bad = ["campaign", "init", str(tmp_path / "w"), "--model", str(pretrained)]
    assert main([*bad, "--video", "a b=" + str(tiny_videos[0])]) == 2
    assert "video name" in capsys.readouterr().err
    assert main([*bad, "--video", f"v={tmp_path / 'missing'}"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["campaign", "status", str(tmp_path)]) == 2
    assert "not a campaign workspace" in capsys.readouterr().err


def test_audit_a_workspace_video(two_rounds, capsys):
    import numpy as np

    from hvsa.annotation.audit import audit_pixel, audit_summary
    from hvsa.cli import main

    root, _, second = two_rounds
    video_dir = root / "data" / "cam"
    provenance = np.load(video_dir / "r2" / "human.npz")["provenance"]
    frame, y, x = np.argwhere(provenance > 0)[-1]
    answer = audit_pixel(video_dir, "ledger.sqlite", str(frame), int(x), int(y))
    assert answer["source"] == "human" and answer["round"] in (1, 2)
    summary = audit_summary(video_dir, "ledger.sqlite")
    assert summary["round"]["clicks"].sum() == second["cam"]["clicks_total"]
    assert main(["audit", str(video_dir), "--summary"]) == 0
    assert "clicks per round" in capsys.readouterr().out
    assert main(["audit", str(video_dir), "--verify"]) == 0
    assert "ledger verified" in capsys.readouterr().out


def _hashes(folder):
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


def test_rollback_to_round_1_redo_round_2_and_return_to_round_3(two_rounds, tmp_path, capsys):
    """On a copy of the module's workspace, which it moves on to round 3 and back."""
    import shutil

    from mlflow import MlflowClient

    from hvsa.campaign.flow import campaign
    from hvsa.campaign.tracking import local_uri
    from hvsa.cli import main

    root = tmp_path / "ws"
    shutil.copytree(two_rounds[0], root, symlinks=True)
    video = root / "data" / "cam"
    r1 = _hashes(video / "r1")
    campaign(str(root), rounds=1)
    r3 = _hashes(video / "r3")
    assert {"model.pt", "human.npz", "selected.parquet", "metrics.json"} <= set(r3)

    assert main(["rollback", str(video), "--to-round", "1"]) == 0
    assert "back at round 1" in capsys.readouterr().out
    assert _hashes(video / "r1") == r1  # byte for byte
    assert not (video / "r3").exists()
    assert Workspace.open(root).campaign.videos["cam"].round == 1
    assert json.loads(dvc(root, "status", "--json")) == {}
    client = MlflowClient(local_uri(root))
    assert client.get_model_version_by_alias("test-cam", "current").tags["hvsa.round"] == "1"

    again = campaign(str(root), rounds=1)  # round 2 once more, from round 1's state
    assert again["cam"]["round"] == 2
    with Ledger(root / "data" / "ledger.sqlite") as ledger:
        events = ledger.frame()
    assert (events["kind"] == "rollback").sum() == 1
    assert (events.query("kind == 'annotation'").groupby("round").size() == [6, 12, 6]).all()

    assert main(["rollback", str(video), "--to-round", "3"]) == 0  # the old round 3
    assert _hashes(video / "r3") == r3
    assert json.loads(dvc(root, "status", "--json")) == {}
    assert client.get_model_version_by_alias("test-cam", "current").tags["hvsa.round"] == "3"
    assert main(["rollback", str(video), "--to-round", "7"]) == 2
    assert "no committed round 7" in capsys.readouterr().err


def test_new_inbox_videos_join_the_campaign(tiny_videos, pretrained, tmp_path):
    import shutil

    from hvsa.campaign.lifecycle import add_videos
    from hvsa.errors import HvsaError

    params = write_fast_params(tmp_path / "params.yaml")
    ws = init_workspace(tmp_path / "ws", "inbox", pretrained, {"cam": str(tiny_videos[0])}, params)
    inbox = tmp_path / "drop"
    inbox.mkdir()
    shutil.copytree(tiny_videos[1], inbox / "street2")
    assert add_videos(ws.root, inbox) == ["street2"]
    assert add_videos(ws.root, inbox) == []  # already in the campaign
    campaign = Workspace.open(ws.root).campaign
    assert campaign.videos["street2"].round == 1 and campaign.videos["street2"].status == "active"
    assert (ws.root / "inbox" / "street2").is_dir()
    assert git(ws.root, "log", "-1", "--format=%s").strip() == "campaign: add street2"
    (inbox / "broken").mkdir()
    with pytest.raises(HvsaError, match="no frames"):
        add_videos(ws.root, inbox)
