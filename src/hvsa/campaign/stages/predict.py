"""Stage ``predict``: the previous round's network on every frame (probabilities, features)."""

import sys

from hvsa.campaign.stages import load_model, run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.data.scaling import frames_to_tensor, work_size
from hvsa.method.predict import predict, save_prediction


def step(ws: Workspace, key: str) -> None:
    prev, here = ws.current(key)
    model, _, device = load_model(ws, prev)
    video = ws.load_video(key)
    frames = frames_to_tensor(video.frames, work_size(video.size, ws.cfg.model.scale))
    save_prediction(here / "predict.npz", predict(model, frames, ws.cfg.output.batch_size, device))


if __name__ == "__main__":
    sys.exit(run_stage("predict", step))
