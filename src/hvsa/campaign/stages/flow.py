"""Stage ``flow``: forward/backward optical flow and occlusion masks, once per video."""

import sys

from hvsa.campaign.stages import run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.method.motion import compute_flow, save_flow
from hvsa.method.network import pick_device


def step(ws: Workspace, key: str) -> None:
    video = ws.load_video(key)
    flow = compute_flow(video.frames, ws.cfg.flow, pick_device(ws.cfg.model.device))
    save_flow(ws.video_dir(key) / "flow.npz", flow)


if __name__ == "__main__":
    sys.exit(run_stage("flow", step))
