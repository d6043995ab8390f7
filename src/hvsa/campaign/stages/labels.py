"""Stage ``labels``: every frame's label — human labels carried along the flow and fused with
the fine-tuned network (``fusion.py``), human labels winning.

Also the mIoU the network expects of these labels (``estimate.json``): the stop rule of a
video without ground truth.
"""

import json
import sys

import numpy as np

from hvsa.campaign.stages import load_context, load_model, run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.data.label_io import write_labels
from hvsa.data.scaling import labels_to_tensor
from hvsa.method.metrics import expected_miou
from hvsa.method.predict import predict
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import compose_labels


def step(ws: Workspace, key: str) -> None:
    _, here = ws.current(key)
    model, classes, device = load_model(ws, here)
    ctx = load_context(ws, key, classes)
    state = LoopState.load(here / "human.npz")
    pred = predict(model, ctx.frames_t, ws.cfg.output.batch_size, device)
    labels, belief = compose_labels(ctx, pred, state, ws.cfg)
    human_small = labels_to_tensor(state.human, ctx.work).numpy().astype(np.uint8)
    estimate = {"miou_estimate": expected_miou(belief.probs.numpy(), human_small)}
    (here / "estimate.json").write_text(json.dumps(estimate) + "\n")
    video = ctx.video
    write_labels(
        here, video.frame_names, labels, video.frames, state.human, classes,
        ws.cfg.output.overlay_alpha,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_stage("labels", step))
