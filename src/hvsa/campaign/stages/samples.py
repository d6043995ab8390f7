"""Stage ``samples``: the candidate samples (frames, rectangles or superpixels) of a video."""

import sys

from hvsa.campaign.stages import run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.method.samples import build_samples, save_samples


def step(ws: Workspace, key: str) -> None:
    video = ws.load_video(key)
    save_samples(ws.video_dir(key) / "samples.npz", build_samples(video.frames, ws.cfg.samples))


if __name__ == "__main__":
    sys.exit(run_stage("samples", step))
