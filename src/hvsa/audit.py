"""Audit: who labelled a pixel, when, in which round and at what cost; and campaign totals.

Answers come from a run folder: the per-round provenance maps (``round_NN/human.npz``) say
which ledger event set each pixel, and the ledger says who, when and for how many clicks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hvsa.errors import HvsaError
from hvsa.ledger import Ledger


def round_dirs(run: Path) -> list[Path]:
    """The run's round folders, oldest first."""
    dirs = sorted(p for p in run.glob("round_[0-9][0-9]") if (p / "human.npz").is_file())
    if not dirs:
        raise HvsaError(f"{run} holds no rounds: is it the --out folder of `hvsa run`?")
    return dirs


def _round_dir(run: Path, round_no: int | None) -> Path:
    dirs = round_dirs(run)
    if round_no is None:
        return dirs[-1]
    wanted = run / f"round_{round_no:02d}"
    if wanted not in dirs:
        raise HvsaError(f"{run} has no round {round_no} (rounds 0..{len(dirs) - 1})")
    return wanted


def _frame_index(folder: Path, frame: str) -> tuple[int, str]:
    names = sorted(p.stem for p in (folder / "labels").glob("*.png"))
    if frame in names:
        return names.index(frame), frame
    if frame.isdigit() and int(frame) < len(names):
        return int(frame), names[int(frame)]
    raise HvsaError(
        f"no frame {frame!r}: give a frame name ({names[0]}…) or index 0..{len(names) - 1}"
    )


def _when(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def audit_pixel(
    run: Path, ledger_name: str, frame: str, x: int, y: int, round_no: int | None = None
) -> dict:
    """Where the label of pixel (x, y) of ``frame`` came from, as of a round (default: last)."""
    folder = _round_dir(run, round_no)
    index, name = _frame_index(folder, frame)
    provenance = np.load(folder / "human.npz")["provenance"]
    h, w = provenance.shape[1:]
    if not (0 <= x < w and 0 <= y < h):
        raise HvsaError(f"pixel {x},{y} is outside the {w}x{h} frame")
    labels = cv2.imread(str(folder / "labels" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    metrics = json.loads((folder / "metrics.json").read_text())
    answer = {
        "frame": name,
        "x": x,
        "y": y,
        "as_of_round": metrics["round"],
        "label": int(labels[y, x]),
    }
    event_id = int(provenance[index, y, x])
    if event_id == 0:
        return answer | {"source": "model", "model_round": metrics["round"]}
    with Ledger(run / ledger_name) as ledger:
        event = ledger.get(event_id)
    pixels = sum(event["class_pixels"].values()) or 1
    return answer | {
        "source": "human",
        "event_id": event_id,
        "annotator": event["annotator"],
        "tool": event["tool"],
        "round": event["round"],
        "started": _when(event["started"]),
        "finished": _when(event["finished"]),
        "sample_id": event["sample_id"],
        "geometry": event["geometry"],
        "clicks": event["clicks"],
        "clicks_per_pixel": event["clicks"] / pixels,
        "label_hash": event["label_hash"],
    }


def audit_summary(run: Path, ledger_name: str) -> dict[str, pd.DataFrame | dict]:
    """Clicks per annotator, per round and per class, and the human/model share of pixels."""
    with Ledger(run / ledger_name) as ledger:
        events = ledger.frame(kind="annotation")
    provenance = np.load(round_dirs(run)[-1] / "human.npz")["provenance"]
    human_share = float((provenance > 0).mean())
    shares = {"pixels_by_human": human_share, "pixels_by_model": 1 - human_share}
    if events.empty:
        empty = pd.DataFrame(columns=["clicks", "events"])
        return {"annotator": empty, "round": empty, "class": empty, "shares": shares}

    def by(column: str) -> pd.DataFrame:
        grouped = events.groupby(column).agg(clicks=("clicks", "sum"), events=("event_id", "count"))
        return grouped.sort_index()

    # a sample's clicks are shared among its classes in proportion to their labelled pixels
    per_class: dict[str, float] = {}
    for clicks, counts in zip(events["clicks"], events["class_pixels"], strict=True):
        total = sum(counts.values())
        for name, n in counts.items():
            per_class[name] = per_class.get(name, 0.0) + clicks * n / total
    classes = pd.DataFrame({"clicks": pd.Series(per_class)}).sort_values("clicks", ascending=False)
    return {"annotator": by("annotator"), "round": by("round"), "class": classes, "shares": shares}
