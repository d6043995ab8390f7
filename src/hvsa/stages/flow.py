"""Stage ``flow``: forward/backward optical flow and occlusion masks, once per video."""

import sys

from hvsa.motion import compute_flow, save_flow
from hvsa.network import pick_device
from hvsa.stages import run_stage
from hvsa.workspace import Workspace


def step(ws: Workspace, key: str) -> None:
    video = ws.load_video(key)
    flow = compute_flow(video.frames, ws.cfg.flow, pick_device(ws.cfg.model.device))
    save_flow(ws.video_dir(key) / "flow.npz", flow)


if __name__ == "__main__":
    sys.exit(run_stage("flow", step))
