"""Stage ``select``: the samples this round sends to the annotator."""

import sys

from hvsa.network import load_checkpoint
from hvsa.predict import load_prediction
from hvsa.rounds import compose_labels, select_samples
from hvsa.stages import load_context, run_stage
from hvsa.state import LoopState
from hvsa.workspace import Workspace


def step(ws: Workspace, key: str) -> None:
    prev, here = ws.current(key)
    _, classes, _ = load_checkpoint(prev / "model.pt", "cpu")
    ctx = load_context(ws, key, classes)
    state = LoopState.load(prev / "human.npz")
    pred = load_prediction(here / "predict.npz")
    _, belief = compose_labels(ctx, pred, state, ws.cfg)
    selected = select_samples(ctx, belief, state, ws.cfg, ws.video(key).round)
    selected.to_parquet(here / "selected.parquet", index=False)


if __name__ == "__main__":
    sys.exit(run_stage("select", step))
