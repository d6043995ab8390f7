"""Stage ``annotate``: the selected samples or class layers get labels and a price; the ledger
records both.

With the oracle annotator the labels come from ground truth at once; with human annotators
from the round's submission in the inbox (the annotation app writes it). Events are keyed in
the ledger, so a stage rerun after a crash records nothing twice; ``receipt.json`` lists them.
"""

import json
import sys

import pandas as pd

from hvsa.annotation.annotator import make_annotator
from hvsa.annotation.ledger import Ledger
from hvsa.annotation.submission import SubmittedAnnotator
from hvsa.campaign.stages import run_stage
from hvsa.campaign.stages.inputs import checkpoint_classes, load_contexts, read_state, save_state
from hvsa.campaign.workspace import Workspace
from hvsa.rounds.engine import Selection, annotate_round, record_round


def step(ws: Workspace, key: str) -> None:
    prev, here = ws.current(key)
    classes = checkpoint_classes(prev)
    contexts = load_contexts(ws, key, classes)
    state = read_state(prev / "human.npz")
    selection = Selection.from_table(pd.read_parquet(here / "selected.parquet"))
    round_no = ws.video(key).round
    if ws.cfg.annotation.annotator == "human":
        annotator = SubmittedAnnotator(ws.root / "inbox" / key, round_no, len(classes))
    else:
        annotator = make_annotator(ws.cfg.annotation.annotator, ws.cfg.annotation.polygon_tolerance)
    annotations = annotate_round(contexts, selection, annotator, state, ws.cfg)
    with Ledger(ws.ledger_path) as ledger:
        recorded = record_round(
            ledger, annotations, contexts, selection, state, ws.campaign.name, key, round_no
        )
    recorded.to_parquet(here / "annotations.parquet", index=False)
    save_state(here / "human.npz", state)
    receipt = {"ledger": str(ws.ledger_path.relative_to(ws.root)), "events": len(recorded)}
    receipt["event_ids"] = [int(i) for i in recorded.get("event_id", [])]
    (here / "receipt.json").write_text(json.dumps(receipt, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_stage("annotate", step))
