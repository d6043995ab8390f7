"""How memory, time and disk grow with a video's length and size: one round of `hvsa run`.

Generates videos (``hvsa synth``) of several lengths and sizes and runs one round of each with
params.yaml's defaults (the default strategy, the simulated oracle, a network started from
nothing) in its own process, sampling the process's resident memory every 0.2 s. Records the
peak and the step it was reached in (the progress bar showing at that moment), the round's
seconds, the flow's seconds (computed once per video, cached), and the disk the run and its
cache take.

    .venv/bin/python benchmarks/scale.py --out runs/scale --csv benchmarks/results/scale.csv \\
        --sizes 100x360x480 300x360x480

A size is FRAMESxHEIGHTxWIDTH; ``--set KEY=VALUE`` passes a setting to every run (e.g.
``data.in_memory_mb=0`` reads even a short video a few frames at a time). Not a test: the
largest sizes take tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

DEFAULT_SIZES = ["100x360x480", "300x360x480", "1000x360x480", "100x720x1280", "1000x720x1280"]
COLUMNS = ["frames", "height", "width", "peak_rss_mb", "round_s", "flow_s", "disk_mb",
           "peak_step", "s_per_frame", "steps_s", "settings", "machine", "measured"]  # fmt: skip


def _hvsa(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "hvsa.cli", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _disk_mb(*folders: Path) -> float:
    total = sum(
        p.stat().st_size for f in folders if f.exists() for p in f.rglob("*") if p.is_file()
    )
    return total / 2**20


_BAR = re.compile(r"([A-Za-z][\w ()./-]*?):\s+\d+%")


def run_round(video: Path, out: Path, sets: list[str]) -> tuple[float, str, str]:
    """Peak resident MB of one `hvsa run` round on ``video`` (child and its children), the
    progress bar showing when it was reached, and the run's stderr."""
    argv = [sys.executable, "-m", "hvsa.cli", "run", str(video), "--out", str(out),
            "--rounds", "1", "--fresh", *(a for s in sets for a in ("--set", s))]  # fmt: skip
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        peak, step = 0.0, ""
        watched = psutil.Process(proc.pid)

        def rss() -> float:
            try:
                procs = [watched, *watched.children(recursive=True)]
                return sum(p.memory_info().rss for p in procs) / 2**20
            except psutil.Error:
                return 0.0

        while proc.poll() is None:
            now = rss()
            if now > peak:
                peak = now
                tail = log.read_text(errors="replace")[-400:]
                bars = _BAR.findall(tail)
                step = bars[-1].strip() if bars else ""
            time.sleep(0.2)
    text = log.read_text(errors="replace")
    if proc.returncode:
        raise SystemExit(f"hvsa run failed on {video}: {text.strip().splitlines()[-1]}")
    return peak, step, text


def machine() -> str:
    """What the rows were measured on: the GPU (model.device auto uses it) and the CPU cores."""
    import torch

    cores = f"{os.cpu_count()} CPU cores"
    return f"{torch.cuda.get_device_name()}, {cores}" if torch.cuda.is_available() else cores


def measure(size: str, out: Path, sets: list[str]) -> dict:
    n, h, w = (int(v) for v in size.split("x"))
    video = out / f"v{size}"
    if not (video / "frames").is_dir():
        _hvsa("synth", str(video), "--frames", str(n), "--size", f"{h}x{w}")
    run = out / f"run-{size}"
    if run.exists():  # its flow cache too: the flow is measured computed, not read back
        shutil.rmtree(run)
    peak, step, _ = run_round(video, run, sets)
    metrics = json.loads((run / "round_01" / "metrics.json").read_text())
    start = json.loads((run / "round_00" / "metrics.json").read_text())
    timings = start.get("timings", {})
    flow_s = timings.get("flow", timings.get("prepare"))
    return {
        "frames": n, "height": h, "width": w, "peak_rss_mb": round(peak),
        "round_s": round(metrics["seconds"], 1), "flow_s": round(flow_s, 1) if flow_s else None,
        "disk_mb": round(_disk_mb(run)), "peak_step": step,
        "s_per_frame": round(metrics["seconds"] / n, 3),
        "steps_s": " ".join(f"{k}={v:.1f}" for k, v in metrics.get("timings", {}).items()),
        "settings": " ".join(sets), "machine": machine(), "measured": time.strftime("%Y-%m-%d"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        metavar="KEY=VALUE",
        help="a setting for every run (as hvsa run --set)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(args.csv) if args.csv.is_file() else pd.DataFrame(columns=COLUMNS)
    for size in args.sizes:
        row = measure(size, args.out, args.sets)
        print(json.dumps(row), flush=True)
        n, h, w = row["frames"], row["height"], row["width"]
        same = (old.frames == n) & (old.height == h) & (old.width == w)
        same &= old.get("settings", pd.Series("", index=old.index)).fillna("") == row["settings"]
        same &= old.get("machine", pd.Series("", index=old.index)).fillna("") == row["machine"]
        old = pd.concat([old[~same], pd.DataFrame([row])], ignore_index=True)
        old = old.reindex(columns=COLUMNS).sort_values(["machine", "settings", "height", "frames"])
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        old.to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
