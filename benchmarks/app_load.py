"""Eight annotators at once: does the annotation app lose or double a label, and how fast does it
answer?

Builds a campaign workspace whose first round waits for people with ``--annotators`` ×
``--per-annotator`` samples (a generated video, 16 px rectangles), serves the app in its own
process (uvicorn on 127.0.0.1, as ``hvsa annotate serve`` does), and lets each annotator take
and hand in samples over HTTP, each from its own thread, as fast as the app answers: ``next``,
then the sample's true labels, each sent twice (a double click: the second must be refused).
Then the round's ``annotate`` stage records the hand-in in the ledger, and the ledger is checked:
every selected sample exactly once, by the annotator the app gave it to.

    .venv/bin/python benchmarks/app_load.py --out runs/app_load \\
        --csv benchmarks/results/generated/app_load.csv

Writes per request kind: count, p50 / p95 / max milliseconds; and the totals (lost, doubled).
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workspace(out: Path, samples: int) -> Path:
    """A campaign whose round 1 waits for ``samples`` human-labelled rectangles."""
    from hvsa.campaign.lifecycle import advance, init_workspace
    from hvsa.campaign.versioning import reproduce
    from hvsa.campaign.workspace import Workspace
    from hvsa.cli import main

    video, model = out / "video", out / "model.pt"
    if not video.exists():
        main(["synth", str(video), "--frames", "24", "--size", "128x160"])
    if not model.exists():
        main(["pretrain", "--video", str(video), "--out", str(model), "--steps", "10"])
    root = out / "ws"
    overrides = {
        "annotation.annotator": "human", "samples.granularity": "rect",
        "samples.rect_size": 16, "loop.budget": samples, "finetune.steps": 2,
        "model.train_crop": None, "app.click_factor": 5,
    }  # fmt: skip
    ws = init_workspace(root, "load", model, {"cam": str(video)}, None, overrides)
    advance(ws)
    reproduce(Workspace.open(ws.root), ["select@cam"])
    return ws.root


SERVE = (
    "import sys, uvicorn; from hvsa.app.server import create_app; "
    "uvicorn.run(create_app(sys.argv[1], resume=lambda *a: None), host='127.0.0.1', "
    "port=int(sys.argv[2]), log_level='warning')"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--per-annotator", type=int, default=50)
    args = parser.parse_args()

    from hvsa.annotation.annotator import OracleAnnotator
    from hvsa.annotation.ledger import Ledger
    from hvsa.app.store import app_store
    from hvsa.campaign.versioning import reproduce
    from hvsa.campaign.workspace import Workspace
    from hvsa.method.samples import load_samples

    args.out.mkdir(parents=True, exist_ok=True)
    total = args.annotators * args.per_annotator
    root = _workspace(args.out, total)
    ws = Workspace.open(root)
    selected = pd.read_parquet(ws.round_dir("cam", 1) / "selected.parquet")
    assert len(selected) == total, f"{len(selected)} samples selected, {total} wanted"
    samples = load_samples(ws.sample_set("cam", "rect16"))
    truth = {  # computed before the clock starts: the clients' work is not the app's
        a.sample_id: base64.b64encode(np.ascontiguousarray(a.labels).tobytes()).decode()
        for a in OracleAnnotator(2.0).annotate(
            ws.load_video("cam"), samples, selected["sample_id"].tolist()
        )
    }
    tokens = {f"a{i}": app_store(ws).add_annotator(f"a{i}") for i in range(args.annotators)}

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(root), str(port)],
                              env={**os.environ})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{base}/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    timings: list[tuple[str, float, int]] = []
    taken: dict[str, list[int]] = {n: [] for n in tokens}
    lock = threading.Lock()

    def annotator(name: str) -> None:
        h = {"Authorization": f"Bearer {tokens[name]}"}
        with httpx.Client(base_url=base, headers=h, timeout=60) as client:
            while True:
                t0 = time.perf_counter()
                r = client.post("/api/rounds/cam/1/next")
                with lock:
                    timings.append(("next", time.perf_counter() - t0, r.status_code))
                sample = r.json() if r.status_code == 200 else {}
                if sample.get("sample_id") is None:
                    return
                sid = sample["sample_id"]
                now = time.time()
                body = {"labels": truth[sid], "clicks_by_tool": {"polygon": 3},
                        "active_s": 3.0, "started": now - 4, "finished": now}  # fmt: skip
                for kind in ("submit", "double"):
                    t0 = time.perf_counter()
                    r = client.post(f"/api/rounds/cam/1/samples/{sid}", json=body)
                    with lock:
                        timings.append((kind, time.perf_counter() - t0, r.status_code))
                taken[name].append(sid)

    started = time.perf_counter()
    threads = [threading.Thread(target=annotator, args=(n,)) for n in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    server.terminate()
    server.wait(30)

    reproduce(Workspace.open(root), ["annotate@cam"])
    with Ledger(ws.ledger_path) as ledger:
        events = ledger.frame()
    recorded = events["sample_id"].tolist()
    lost = len(set(selected["sample_id"]) - set(recorded))
    doubled = len(recorded) - len(set(recorded))
    wrong_owner = sum(
        1 for n, ids in taken.items() for sid in ids
        if set(events.loc[events["sample_id"] == sid, "annotator"]) != {n}
    )  # fmt: skip
    frame = pd.DataFrame(timings, columns=["kind", "seconds", "status"])
    rows = []
    for kind, group in frame.groupby("kind", sort=False):
        ms = group["seconds"] * 1000
        rows.append({
            "kind": kind, "requests": len(group),
            "statuses": ";".join(f"{k}:{v}" for k, v in group["status"].value_counts().items()),
            "p50_ms": round(float(ms.quantile(0.5)), 1),
            "p95_ms": round(float(ms.quantile(0.95)), 1), "max_ms": round(float(ms.max()), 1),
        })  # fmt: skip
    rows.append({"kind": "total", "requests": len(frame), "statuses": f"lost:{lost};doubled:"
                 f"{doubled};wrong_annotator:{wrong_owner};events:{len(events)}",
                 "p50_ms": None, "p95_ms": None, "max_ms": round(wall * 1000, 1)})  # fmt: skip
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    if lost or doubled or wrong_owner or len(events) != total:
        raise SystemExit(f"lost {lost}, doubled {doubled}, wrong annotator {wrong_owner}")


if __name__ == "__main__":
    main()
