"""Stage ``select``: the samples (or class layers) this round sends to the annotator, chosen
from the previous round's view; ``auto``'s choice and state go to ``auto.json``."""

import sys

from hvsa.campaign.stages import run_stage
from hvsa.campaign.stages.inputs import checkpoint_classes, load_contexts, read_state, read_view
from hvsa.campaign.workspace import Workspace
from hvsa.rounds.engine import load_chooser, save_chooser, select_round


def step(ws: Workspace, key: str) -> None:
    prev, here = ws.current(key)
    contexts = load_contexts(ws, key, checkpoint_classes(prev))
    state = read_state(prev / "human.npz")
    chooser = load_chooser(prev)
    selection = select_round(
        contexts, read_view(ws, key, prev), state, ws.cfg, chooser, ws.video(key).round
    )
    here.mkdir(parents=True, exist_ok=True)
    selection.table.to_parquet(here / "selected.parquet", index=False)
    save_chooser(here, chooser)


if __name__ == "__main__":
    sys.exit(run_stage("select", step))
