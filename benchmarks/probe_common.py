"""What the diagnosis scripts beside this file share: their command line and a finished run.

Each script reads a benchmark strategy's run folder (``round_NN`` inside, the flow cache two
levels up) on the video it ran on; only what they do with it differs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from hvsa.config import Config, load_config, parse_set_option
from hvsa.motion import Flow, load_or_compute_flow
from hvsa.video import Video, load_video


def parse(doc: str, add: Callable[[argparse.ArgumentParser], None]) -> argparse.Namespace:
    """``VIDEO RUN [--set k=v]... --csv FILE`` plus the script's own options (``add``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("run", type=Path, help="a benchmark strategy's run folder (round_NN inside)")
    add(ap)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--csv", type=Path, required=True)
    return ap.parse_args()


def open_run(args: argparse.Namespace) -> tuple[Config, Video, Flow]:
    """The settings, the video (with its ground truth) and the run's cached flow."""
    cfg = load_config(None, parse_set_option(args.set))
    video = load_video(args.video, cfg.data.classes_file, cfg.data.void_id)
    if video.labels is None:
        raise SystemExit(f"{args.video} has no labels/: the diagnosis needs ground truth")
    flow = load_or_compute_flow(video.frames, cfg.flow, args.run.parents[1] / "cache")
    return cfg, video, flow
