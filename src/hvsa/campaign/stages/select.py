"""Stage ``select``: the samples this round sends to the annotator."""

import sys

from hvsa.campaign.stages import load_context, run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.method.network import load_checkpoint
from hvsa.method.predict import load_prediction
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import compose_labels, select_samples


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
