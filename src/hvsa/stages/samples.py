"""Stage ``samples``: the candidate samples (frames, rectangles or superpixels) of a video."""

import sys

from hvsa.samples import build_samples, save_samples
from hvsa.stages import run_stage
from hvsa.workspace import Workspace


def step(ws: Workspace, key: str) -> None:
    video = ws.load_video(key)
    save_samples(ws.video_dir(key) / "samples.npz", build_samples(video.frames, ws.cfg.samples))


if __name__ == "__main__":
    sys.exit(run_stage("samples", step))
