"""Does a team's campaign run the method `hvsa run` runs, and what does the orchestration cost?

Runs one labelled video twice with params.yaml's defaults and the oracle: in process
(``hvsa run``, the engine keeping its state in memory) and as a campaign driven by the Prefect
flow of ``flows/campaign.py`` over the workspace's DVC stages (every stage a process that reads
what the stage before it wrote, a git commit and an MLflow run per round). Per round it records
clicks and mIoU of both, the wall time of both (the campaign's from its flow run: from the
round's ``advance`` task to the next round's; round 1 of both includes preparing the video,
which ``hvsa run`` reports as its round 0), their ratio, and the campaign's time per task, so
that what dominates the overhead is in the table.

    .venv/bin/python benchmarks/campaign_vs_run.py ../shared/datasets/camvid/clips/0016E5_15hz \\
        --model runs/bench/0016E5_15hz_full/pretrained.pt --out runs/campaign_vs_run \\
        --csv benchmarks/results/0016E5_15hz/campaign_vs_run.csv

Writes the per-round table to ``--csv`` and, beside it, ``campaign_vs_run_summary.csv``: clicks
to each benchmark target for ``campaign-auto`` and ``run-auto`` (the columns of
``results/summary.csv``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from hvsa.benchmark.report import clicks_to_targets
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.workspace import Workspace
from hvsa.cli import main as hvsa
from hvsa.config import load_config
from hvsa.data.video import load_video
from hvsa.rounds.steps import manual_clicks

REPO = Path(__file__).resolve().parents[1]


def _rounds(folder_of, metrics_of) -> list[dict]:
    rows = []
    r = 0
    while (path := folder_of(r) / "metrics.json").is_file():
        m = json.loads(path.read_text())
        rows.append({"round": r, "clicks": m["clicks_total"], "miou": m["miou"],
                     "seconds": m["seconds"], **metrics_of(m)})  # fmt: skip
        r += 1
    return rows


def _task_times(prefect_home: Path) -> pd.DataFrame:
    """Every task run of the campaign's flow runs: name, start, end (seconds since epoch)."""
    env = dict(os.environ, PREFECT_HOME=str(prefect_home))
    code = (
        "import json; from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    runs = c.read_task_runs()\n"
        "print(json.dumps([[r.name, r.start_time.timestamp(), r.end_time.timestamp()]\n"
        "                  for r in runs if r.start_time and r.end_time]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    tasks = pd.DataFrame(json.loads(out.strip().splitlines()[-1]), columns=["task", "start", "end"])
    return tasks.sort_values("start", ignore_index=True)


def _per_round(tasks: pd.DataFrame) -> list[dict]:
    """The flow's tasks grouped by round (each round starts with ``advance``), and each round's
    wall time: from its ``advance`` to the next round's (to its last step for the last round),
    what an annotator waits between two rounds. MLflow logging may run beside the next round."""
    rounds: list[dict] = []
    for t in tasks.itertuples():
        if t.task.startswith("advance"):
            rounds.append({"start": t.start, "end": t.end, "tasks": {}})
        elif rounds:
            name = t.task.split("@")[0].split("-")[0]
            current = rounds[-1]
            current["tasks"][name] = current["tasks"].get(name, 0.0) + t.end - t.start
            if not name.startswith("mlflow"):
                current["end"] = max(current["end"], t.end)
    for this, after in zip(rounds, rounds[1:], strict=False):
        this["end"] = after["start"]
    # the last advance finds nothing to run: no stage follows it
    return [r for r in rounds if any(not k.startswith("mlflow") for k in r["tasks"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--csv", required=True, type=Path)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config()
    video = load_video(args.video, cfg.data.classes_file, cfg.data.void_id)
    manual = manual_clicks(video.labels, cfg.annotation.polygon_tolerance)

    run = out / "run"
    if not (run / "summary.json").is_file():
        assert hvsa(["run", args.video, "--model", str(args.model), "--out", str(run)]) == 0
    inproc = _rounds(lambda r: run / f"round_{r:02d}",
                     lambda m: {"prepare": m.get("timings", {}).get("prepare", 0.0)})  # fmt: skip

    ws_root = out / "ws"
    if not ws_root.exists():
        init_workspace(ws_root, "bench", args.model, {"video": str(Path(args.video).resolve())})
    prefect_home = out / "prefect"
    env = dict(os.environ, PREFECT_HOME=str(prefect_home))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    if any(v.status == "active" for v in Workspace.open(ws_root).campaign.videos.values()):
        started = time.time()
        subprocess.run([sys.executable, str(REPO / "flows" / "campaign.py"), str(ws_root)],
                       env=env, check=True)  # fmt: skip
        print(f"campaign flow: {time.time() - started:.0f} s")
    camp = _rounds(lambda r: ws_root / "data" / "video" / f"r{r}", lambda m: {})
    timed = _per_round(_task_times(prefect_home))

    rows = []
    for r in range(1, max(len(inproc), len(camp))):
        a = inproc[r] if r < len(inproc) else {}
        b = camp[r] if r < len(camp) else {}
        t = timed[r - 1] if r - 1 < len(timed) else None
        run_s = a.get("seconds")
        if r == 1 and run_s is not None:
            # the campaign's first round also prepares the video (flow, samples, the starting
            # network's labels): what `hvsa run` does before (prepare) and in its round 0
            run_s += inproc[0]["prepare"] + inproc[0]["seconds"]
        row = {"round": r, "run_clicks": a.get("clicks"), "run_miou": a.get("miou"),
               "run_s": run_s, "campaign_clicks": b.get("clicks"),
               "campaign_miou": b.get("miou"),
               "campaign_s": None if t is None else round(t["end"] - t["start"], 2)}  # fmt: skip
        if row["run_s"] and row["campaign_s"]:
            row["overhead"] = round(row["campaign_s"] / row["run_s"] - 1, 3)
        if t is not None:
            row |= {f"task_{k}_s": round(v, 2) for k, v in t["tasks"].items()}
        rows.append(row)
    table = pd.DataFrame(rows)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    print(table.to_string(index=False))

    curves = []
    for name, rounds in (("run-auto", inproc), ("campaign-auto", camp)):
        for x in rounds:
            curves.append({"video": video.name, "strategy": name, "round": x["round"],
                           "clicks": x["clicks"], "clicks_pct": 100 * x["clicks"] / manual,
                           "miou": x["miou"]})  # fmt: skip
    summary = clicks_to_targets(pd.DataFrame(curves), cfg.benchmark.targets)
    summary.to_csv(args.csv.with_name(args.csv.stem + "_summary.csv"), index=False)
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
