"""A team's stack on one machine: a Prefect server, a process work pool with a worker, an MLflow
tracking server and (for a workspace) the annotation app — up with one command, down with another.

Each service is a process group of its own (what `down` signals), listening on 127.0.0.1 only,
with telemetry off; its log and the pids are kept in the stack's folder (``.hvsa-stack`` by
default), so ``down`` stops exactly what ``up`` started. The embedded defaults (Prefect's
temporary API, ``mlflow.db`` in the workspace) need none of this: the stack is for a campaign
that people label over days, runs on a schedule, or is deployed to a work pool
(``prefect.yaml``; docs/cluster.md for a real cluster).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hvsa.data.resources import process_alive
from hvsa.errors import HvsaError

POOL = "hvsa-process"  # the process work pool prefect.yaml deploys to
STATE = "stack.json"
QUIET = {  # nothing the stack starts reports anything to another host
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
}


@dataclass(frozen=True)
class Ports:
    prefect: int = 4200
    mlflow: int = 5000
    app: int = 8765


def _bin(name: str) -> str:
    """A console script of the environment hvsa runs in (not whatever PATH finds first)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else name


def _healthy(url: str, timeout_s: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:].strip().splitlines()
            raise HvsaError(f"{url} did not start: {tail[-1] if tail else 'no output'} ({log})")
        if time.monotonic() > deadline:
            raise HvsaError(f"{url} did not answer within {timeout_s:.0f} s ({log})")
        time.sleep(0.5)


def _start(folder: Path, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = (folder / f"{name}.log").open("ab")
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def up(
    folder: Path,
    ports: Ports = Ports(),
    workspace: Path | None = None,
    mlflow_backend: str | None = None,
    timeout_s: float = 180,
) -> dict[str, str]:
    """Start the stack; returns its URLs. Refuses when a stack already runs from ``folder``."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if running(folder):
        raise HvsaError(f"a stack already runs from {folder}: hvsa stack down --dir {folder}")
    env = dict(os.environ, **QUIET, PREFECT_HOME=str(folder / "prefect"))
    env.pop("PREFECT_API_URL", None)
    urls = {
        "prefect": f"http://127.0.0.1:{ports.prefect}",
        "prefect_api": f"http://127.0.0.1:{ports.prefect}/api",
        "mlflow": f"http://127.0.0.1:{ports.mlflow}",
    }
    pids: dict[str, int] = {}
    try:
        server = _start(folder, "prefect-server", [
            _bin("prefect"), "server", "start", "--host", "127.0.0.1",
            "--port", str(ports.prefect)], env)  # fmt: skip
        pids["prefect-server"] = server.pid
        _write(folder, pids, urls)
        _healthy(urls["prefect_api"] + "/health", timeout_s, server, folder / "prefect-server.log")
        env["PREFECT_API_URL"] = urls["prefect_api"]
        worker = _start(folder, "prefect-worker", [
            _bin("prefect"), "worker", "start", "--pool", POOL, "--type", "process",
            "--create-pool-if-not-found", "--name", "hvsa-worker"],
            dict(env, PREFECT_WORKER_QUERY_SECONDS="2"))  # fmt: skip
        pids["prefect-worker"] = worker.pid
        backend = mlflow_backend or f"sqlite:///{folder / 'mlflow.db'}"
        mlflow = _start(folder, "mlflow-server", [
            _bin("mlflow"), "server", "--backend-store-uri", backend, "--serve-artifacts",
            "--artifacts-destination", (folder / "mlflow-artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(ports.mlflow), "--workers", "1"], env)  # fmt: skip
        pids["mlflow-server"] = mlflow.pid
        _write(folder, pids, urls)
        _healthy(urls["mlflow"] + "/health", timeout_s, mlflow, folder / "mlflow-server.log")
        if workspace is not None:
            urls["app"] = f"http://127.0.0.1:{ports.app}"
            app = _start(folder, "app", [
                _bin("hvsa"), "annotate", "serve", "--workspace", str(workspace.resolve()),
                "--port", str(ports.app)], env)  # fmt: skip
            pids["app"] = app.pid
            _write(folder, pids, urls)
            _healthy(urls["app"] + "/", timeout_s, app, folder / "app.log")
        if worker.poll() is not None:
            raise HvsaError(f"the Prefect worker stopped: {folder / 'prefect-worker.log'}")
    except BaseException:
        down(folder)
        raise
    _write(folder, pids, urls)
    return urls


def _write(folder: Path, pids: dict[str, int], urls: dict[str, str]) -> None:
    (folder / STATE).write_text(json.dumps({"pids": pids, "urls": urls}, indent=1))


def running(folder: Path) -> dict[str, int]:
    """The services of the stack in ``folder`` that still run: name → pid."""
    state = folder / STATE
    if not state.is_file():
        return {}
    pids = json.loads(state.read_text())["pids"]
    return {name: pid for name, pid in pids.items() if process_alive(pid)}


def urls_of(folder: Path) -> dict[str, str]:
    state = folder / STATE
    return json.loads(state.read_text())["urls"] if state.is_file() else {}


def down(folder: Path, timeout_s: float = 20) -> list[str]:
    """Stop every service of the stack (its whole process group: a worker's flow runs too);
    returns the names stopped."""
    folder = folder.resolve()
    alive = running(folder)
    for pid in alive.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(process_alive(pid) for pid in alive.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive.values():
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    (folder / STATE).unlink(missing_ok=True)
    return list(alive)
