"""How much memory does `hvsa run` take, against the estimate it refuses videos by?

Generates videos of several frame counts and sizes (``hvsa synth``), runs one round of each
with params.yaml's defaults in its own process, and records the process's peak resident memory
beside ``hvsa.rounds.rules.memory_needed`` for the same video: the estimate must stay above the
measurement (it refuses a video only when it would not fit) without being far above it.

    .venv/bin/python benchmarks/run_memory.py --out runs/memory \\
        --csv benchmarks/results/generated/run_memory.csv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from hvsa.config import load_config
from hvsa.data.video import probe_video
from hvsa.rounds.rules import memory_needed

SIZES = [(8, 120, 160), (8, 240, 320), (8, 480, 640), (24, 240, 320), (4, 960, 1280)]


def _hvsa(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "hvsa.cli", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


PEAK = (
    "import resource, sys; from hvsa.cli import main; status = main(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(status)"
)


def peak_of_run(video: Path, model: Path, out: Path) -> float:
    """Peak resident bytes of one `hvsa run` round on ``video``, in its own process."""
    argv = ["run", str(video), "--model", str(model), "--out", str(out), "--rounds", "1", "--fresh"]
    done = subprocess.run([sys.executable, "-c", PEAK, *argv], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr.strip().splitlines()[-1])
    return int(done.stderr.strip().splitlines()[-1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    args = parser.parse_args()
    cfg = load_config()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "model.pt"
    first = args.out / "v8x120x160"
    _hvsa("synth", str(first), "--frames", "8", "--size", "120x160")
    _hvsa("pretrain", "--video", str(first), "--out", str(model), "--steps", "5")
    videos = []
    for n, h, w in sorted(SIZES, key=lambda s: s[0] * s[1] * s[2]):
        video = args.out / f"v{n}x{h}x{w}"
        if not video.exists():
            _hvsa("synth", str(video), "--frames", str(n), "--size", f"{h}x{w}")
        videos.append(video)
    rows = []
    for video in videos:
        n, h, w = probe_video(video)
        peak = peak_of_run(video, model, args.out / f"run-{video.name}")
        need = memory_needed(n, h, w, cfg)
        rows.append({"video": video.name, "frames": n, "height": h, "width": w,
                     "peak_gib": round(peak / 2**30, 3), "estimate_gib": round(need / 2**30, 3),
                     "estimate_over_peak": round(need / peak, 2)})  # fmt: skip
        print(rows[-1], flush=True)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
