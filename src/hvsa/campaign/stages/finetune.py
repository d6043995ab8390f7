"""Stage ``finetune``: the previous round's network, fine-tuned on every human label so far."""

import json
import sys

from hvsa.campaign.stages import load_context, load_model, run_stage
from hvsa.campaign.workspace import Workspace
from hvsa.method.network import save_checkpoint
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import finetune_model


def step(ws: Workspace, key: str) -> None:
    prev, here = ws.current(key)
    round_no = ws.video(key).round
    model, classes, device = load_model(ws, prev)
    ctx = load_context(ws, key, classes)
    state = LoopState.load(here / "human.npz")
    history = finetune_model(model, ctx, state, ws.cfg, device, round_no)
    save_checkpoint(here / "model.pt", model, classes, {"round": round_no})
    (here / "finetune.json").write_text(json.dumps(history) + "\n")


if __name__ == "__main__":
    sys.exit(run_stage("finetune", step))
