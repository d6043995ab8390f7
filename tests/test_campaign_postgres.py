"""A campaign whose MLflow is a tracking server on PostgreSQL (``campaign.tracking``).

Debian's PostgreSQL (initdb + pg_ctl, as the ``postgres`` user when the tests run as root) on
127.0.0.1 and a port of its own, an ``mlflow server --backend-store-uri postgresql+psycopg://…
--serve-artifacts`` in front of it: two rounds log and move the registered model's ``current``
alias, a rollback moves it back, and the workspace holds no mlflow.db of its own.
"""

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from hvsa.campaign.lifecycle import init_workspace
from tests.conftest import free_port, write_fast_params

pytestmark = pytest.mark.slow  # a database server, an MLflow server, a campaign flow


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1 with a database ``mlflow``; yields its SQLAlchemy URL."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    import psycopg

    base = Path(tempfile.mkdtemp(prefix="hvsa-pg-"))  # not pytest's 0700 folders: postgres reads it
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    db, port = base / "db", free_port()
    subprocess.run([*as_user, initdb, "-D", str(db), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)  # fmt: skip
    subprocess.run([*as_user, pg_ctl, "-D", str(db), "-l", str(base / "log"), "-w", "-o",
                    f"-h 127.0.0.1 -p {port} -k {base}", "start"], check=True,
                   capture_output=True)  # fmt: skip
    try:
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                             autocommit=True) as conn:  # fmt: skip
            conn.execute("CREATE DATABASE mlflow")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(db), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """``mlflow server`` on the database, artifacts served by it; yields its URL."""
    port = free_port()
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", postgres,
         "--serve-artifacts", "--artifacts-destination", artifacts.as_uri(),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("mlflow server did not start:\n" + server.communicate()[0][-3000:])
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_rounds_log_to_mlflow_on_postgresql_and_rollback_moves_the_alias_back(
    mlflow_server, tiny_videos, pretrained, tmp_path, prefect_api, capsys
):
    from mlflow import MlflowClient

    from hvsa.campaign.flow import campaign
    from hvsa.cli import main

    params = write_fast_params(tmp_path / "params.yaml", **{"campaign.tracking": mlflow_server})
    ws = init_workspace(tmp_path / "ws", "pg", pretrained, {"cam": str(tiny_videos[0])}, params)
    campaign(str(ws.root), rounds=1)
    campaign(str(ws.root), rounds=1)
    client = MlflowClient(mlflow_server)
    current = client.get_model_version_by_alias("pg-cam", "current")
    assert current.tags["hvsa.round"] == "2"
    runs = client.search_runs(
        [client.get_experiment_by_name("pg").experiment_id],
        filter_string="tags.`hvsa.level` = 'round'",
    )
    assert sorted(r.data.tags["hvsa.round"] for r in runs) == ["1", "2"]
    assert all(r.data.metrics["clicks_total"] > 0 for r in runs)
    # artifacts went through the server (mlflow-artifacts:), not into the workspace
    assert client.list_artifacts(runs[0].info.run_id), "the round's artifacts are on the server"
    assert not (ws.root / "mlflow.db").exists() and not (ws.root / "mlruns").exists()

    assert main(["rollback", str(ws.root / "data" / "cam"), "--to-round", "1"]) == 0
    assert "back at round 1" in capsys.readouterr().out
    assert client.get_model_version_by_alias("pg-cam", "current").tags["hvsa.round"] == "1"
