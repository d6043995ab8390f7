"""Stage ``finetune``: the previous round's network, fine-tuned on every human label so far."""

import json
import sys

from hvsa.network import save_checkpoint
from hvsa.rounds import finetune_model
from hvsa.stages import load_context, load_model, run_stage
from hvsa.state import LoopState
from hvsa.workspace import Workspace


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
