"""Stage ``finetune``: the previous round's network, fine-tuned on every human label so far —
or kept as it was after a class-layer round (``finetune.json`` says which)."""

import json
import sys

import pandas as pd

from hvsa.campaign.stages import run_stage
from hvsa.campaign.stages.inputs import load_contexts, load_model, read_state, read_view
from hvsa.campaign.workspace import Workspace
from hvsa.method.network import save_checkpoint
from hvsa.rounds.engine import Selection, train_round


def step(ws: Workspace, key: str) -> None:
    prev, here = ws.current(key)
    round_no = ws.video(key).round
    model, classes, device = load_model(ws, prev)
    ctx = next(iter(load_contexts(ws, key, classes).values()))
    state = read_state(here / "human.npz")
    selection = Selection.from_table(pd.read_parquet(here / "selected.parquet"))
    history = train_round(model, ctx, state, ws.cfg, device, round_no, selection,
                          read_view(ws, key, prev))  # fmt: skip
    save_checkpoint(here / "model.pt", model, classes, {"round": round_no})
    done = {"trained": history is not None, "history": history or []}
    (here / "finetune.json").write_text(json.dumps(done) + "\n")


if __name__ == "__main__":
    sys.exit(run_stage("finetune", step))
