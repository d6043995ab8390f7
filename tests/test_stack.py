"""`hvsa stack up`: a real Prefect server, a process work pool with its worker and an MLflow
server on 127.0.0.1; the repository's prefect.yaml deploys the campaign flow to the pool, and a
deployment run labels a round with the oracle to completion, logging to that MLflow."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.workspace import Workspace
from hvsa.cli import main
from tests.conftest import free_port, write_fast_params

pytestmark = pytest.mark.slow  # three servers, a worker and a flow run in a process of its own

REPO = Path(__file__).resolve().parents[1]


def test_a_deployment_of_the_campaign_flow_runs_on_the_stacks_worker(
    tiny_videos, pretrained, tmp_path, capsys
):
    from mlflow import MlflowClient

    ports = [str(free_port()) for _ in range(2)]
    folder = tmp_path / "stack"
    args = ["stack", "up", "--dir", str(folder), "--prefect-port", ports[0],
            "--mlflow-port", ports[1]]  # fmt: skip
    assert main(args) == 0
    try:
        out = capsys.readouterr().out
        api, mlflow = f"http://127.0.0.1:{ports[0]}/api", f"http://127.0.0.1:{ports[1]}"
        assert f"export PREFECT_API_URL={api}" in out and f"campaign.tracking={mlflow}" in out
        assert main(["stack", "up", "--dir", str(folder)]) == 2  # one stack per folder
        assert "already runs" in capsys.readouterr().err

        params = write_fast_params(tmp_path / "params.yaml", **{"campaign.tracking": mlflow})
        ws = init_workspace(tmp_path / "ws", "dep", pretrained, {"cam": str(tiny_videos[0])},
                            params)  # fmt: skip
        env = dict(os.environ, PREFECT_API_URL=api, HVSA_WORKSPACE=str(ws.root))
        prefect = str(Path(sys.executable).parent / "prefect")
        deployed = subprocess.run([prefect, "--no-prompt", "deploy", "--all"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        ran = subprocess.run(
            [prefect, "deployment", "run", "hvsa-campaign/campaign", "--param", "rounds=1",
             "--watch", "--watch-timeout", "600"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=700,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
        assert "Completed" in ran.stdout
        video = Workspace.open(ws.root).campaign.videos["cam"]
        assert video.round >= 1 and (ws.root / "data" / "cam" / "r1" / "metrics.json").is_file()
        version = MlflowClient(mlflow).get_model_version_by_alias("dep-cam", "current")
        assert version.tags["hvsa.round"] == "1"
        assert main(["stack", "status", "--dir", str(folder)]) == 0
        assert "prefect-worker" in capsys.readouterr().out
    finally:
        main(["stack", "down", "--dir", str(folder)])
    assert "stopped prefect-server, prefect-worker, mlflow-server" in capsys.readouterr().out
    assert main(["stack", "status", "--dir", str(folder)]) == 0
    assert "no stack runs" in capsys.readouterr().out
