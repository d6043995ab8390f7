"""Stage ``labels``: every frame's label — the fine-tuned network's, human labels winning."""

import sys

from hvsa.labels import write_labels
from hvsa.predict import predict
from hvsa.rounds import compose_labels
from hvsa.stages import load_context, load_model, run_stage
from hvsa.state import LoopState
from hvsa.workspace import Workspace


def step(ws: Workspace, key: str) -> None:
    _, here = ws.current(key)
    model, classes, device = load_model(ws, here)
    ctx = load_context(ws, key, classes)
    state = LoopState.load(here / "human.npz")
    pred = predict(model, ctx.frames_t, ws.cfg.output.batch_size, device)
    labels = compose_labels(ctx, pred, state, ws.cfg)
    video = ctx.video
    write_labels(
        here, video.frame_names, labels, video.frames, state.human, classes,
        ws.cfg.output.overlay_alpha,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_stage("labels", step))
