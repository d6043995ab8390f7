"""Stage ``annotate``: the selected samples or class layers get labels and a price; the ledger
records both.

The labels come from the round's submission in the inbox: the annotation app writes it for
people; the oracle annotator writes it from the ground truth, in the same format. Events are
keyed in the ledger, so a stage rerun after a crash records nothing twice; ``receipt.json``
lists them.
"""

import json
import sys
from functools import cache
from pathlib import Path

import pandas as pd

from hvsa.annotation.annotator import Prefill, make_annotator
from hvsa.annotation.ledger import Ledger
from hvsa.annotation.submission import SubmittedAnnotator, submission_paths, write_submission
from hvsa.campaign.stages import run_stage
from hvsa.campaign.stages.inputs import checkpoint_classes, load_contexts, read_state, save_state
from hvsa.campaign.workspace import Workspace
from hvsa.data.images import read_image
from hvsa.errors import crash_point
from hvsa.rounds.engine import Selection, annotate_round, ask, record_round


def previous_labels(folder: Path, frame_names: list[str]) -> Prefill:
    """The previous round's labels of a frame, read once when first asked (rectangles of one
    frame share it): what the annotation app pre-fills (``app/work.py``) and the simulated
    corrector corrects."""
    return cache(lambda frame: read_image(folder / f"{frame_names[frame]}.png"))


def step(ws: Workspace, key: str) -> None:
    prev, here = ws.current(key)
    classes = checkpoint_classes(prev)
    contexts = load_contexts(ws, key, classes)
    state = read_state(prev / "human.npz")
    selection = Selection.from_table(pd.read_parquet(here / "selected.parquet"))
    round_no = ws.video(key).round
    inbox = ws.root / "inbox" / key
    handed_in = submission_paths(inbox, round_no)[0].is_file()
    if ws.cfg.annotation.annotator != "human" and not handed_in:
        # the oracle hands its labels in as the annotation app does, and they are read back the
        # same way: a campaign with the oracle measures the pipeline people's labels take
        oracle = make_annotator(ws.cfg.annotation)
        video = next(iter(contexts.values())).video
        prefill = previous_labels(prev / "labels", video.frame_names)
        write_submission(inbox, round_no, ask(contexts, selection, oracle, prefill))
    annotator = SubmittedAnnotator(inbox, round_no, len(classes))
    annotations = annotate_round(contexts, selection, annotator, state, ws.cfg)
    with Ledger(ws.ledger_path) as ledger:
        recorded = record_round(
            ledger, annotations, contexts, selection, state, ws.campaign.name, key, round_no
        )
    crash_point("annotate-recorded", round_no)
    recorded.to_parquet(here / "annotations.parquet", index=False)
    save_state(here / "human.npz", state)
    receipt = {"ledger": str(ws.ledger_path.relative_to(ws.root)), "events": len(recorded)}
    receipt["event_ids"] = [int(i) for i in recorded.get("event_id", [])]
    (here / "receipt.json").write_text(json.dumps(receipt, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_stage("annotate", step))
