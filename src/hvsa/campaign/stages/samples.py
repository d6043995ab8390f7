"""Stage ``samples``: the candidate samples of a video — every sample set the settings need
(frames, rectangles or superpixels; ``auto`` offers several), once per video."""

import sys

from hvsa.campaign.stages import run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.method.samples import build_samples, parse_granularity, save_samples
from hvsa.rounds.rules import sample_set_names


def step(ws: Workspace, key: str) -> None:
    video = ws.load_video(key)
    for name in sample_set_names(ws.cfg):
        kind, size = parse_granularity(name)
        scfg = ws.cfg.samples.model_copy(update={"granularity": kind, "rect_size": size or 2})
        save_samples(ws.sample_set(key, name), build_samples(video.frames, scfg))


if __name__ == "__main__":
    sys.exit(run_stage("samples", step))
