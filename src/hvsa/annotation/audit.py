"""Audit: who labelled a pixel, when, in which round and at what cost; and campaign totals.

Answers come from a run folder: the per-round provenance maps (``round_NN/human.npz``) say
which ledger event set each pixel, and the ledger says who, when and for how many clicks.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from hvsa.annotation.ledger import Ledger, verify_chain
from hvsa.data.arrays import load_arrays
from hvsa.data.images import read_image
from hvsa.errors import HvsaError

ROUND_DIR = re.compile(r"^(?:round_|r)(\d+)$")


def round_dirs(run: Path) -> dict[int, Path]:
    """Finished round folders by number: ``round_NN`` of `hvsa run`, ``rN`` of a workspace."""
    found = {}
    for p in run.iterdir() if run.is_dir() else []:
        match = ROUND_DIR.match(p.name)
        if match and (p / "human.npz").is_file() and (p / "metrics.json").is_file():
            found[int(match.group(1))] = p
    if not found:
        raise HvsaError(
            f"{run} holds no finished round: give the --out folder of `hvsa run` "
            "or a workspace's data/<video>"
        )
    return dict(sorted(found.items()))


def find_ledger(run: Path, name: str) -> Path:
    """The ledger of a run folder (inside it) or of a workspace video (in data/, its parent)."""
    for candidate in (run / name, run.parent / name):
        if candidate.is_file():
            return candidate
    raise HvsaError(f"no ledger {name} in {run} or {run.parent}")


def _round_dir(run: Path, round_no: int | None) -> Path:
    dirs = round_dirs(run)
    if round_no is None:
        return list(dirs.values())[-1]
    if round_no not in dirs:
        raise HvsaError(f"{run} has no finished round {round_no} (rounds: {list(dirs)})")
    return dirs[round_no]


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
    provenance = load_arrays(folder / "human.npz", "round state")["provenance"]
    h, w = provenance.shape[1:]
    if not (0 <= x < w and 0 <= y < h):
        raise HvsaError(f"pixel {x},{y} is outside the {w}x{h} frame")
    labels = read_image(folder / "labels" / f"{name}.png")
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
    with Ledger(find_ledger(run, ledger_name)) as ledger:
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
        # labels that existed before the rounds (``existing.py``): where they came from
        "imported_from": (event["clicks_detail"] or {}).get("source")
        if event["tool"] == "import"
        else None,
    }


def audit_summary(run: Path, ledger_name: str) -> dict[str, pd.DataFrame | dict]:
    """Clicks per annotator, per round and per class, and the human/model share of pixels."""
    with Ledger(find_ledger(run, ledger_name)) as ledger:
        events = ledger.frame(kind="annotation")
    if not events.empty and not (run / ledger_name).is_file():
        events = events[events["video"] == run.name]  # a workspace ledger holds every video
    last = list(round_dirs(run).values())[-1]
    provenance = load_arrays(last / "human.npz", "round state")["provenance"]
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
    for clicks, counts, where in zip(
        events["clicks"], events["class_pixels"], events["geometry"], strict=True
    ):
        total = sum(counts.values())
        if not total and where.get("kind") == "layer":  # a class layer found its class absent
            counts, total = {where["class"]: 1}, 1
        for name, n in counts.items():
            per_class[name] = per_class.get(name, 0.0) + clicks * n / total
    classes = pd.DataFrame({"clicks": pd.Series(per_class)}).sort_values("clicks", ascending=False)
    return {"annotator": by("annotator"), "round": by("round"), "class": classes, "shares": shares}


def verify_run(run: Path, ledger_name: str) -> tuple[str, list[str]]:
    """Is the ledger of a run folder (or a workspace's data/<video>) what was written?

    Checks the ledger on its own (triggers, ids, hash chain: ``ledger.verify_chain``), then
    against the versioned round folders: every event a round recorded (``annotations.parquet``)
    is in the ledger with the same hash and clicks, and every pixel a provenance map
    (``human.npz``) gives to a human names an annotation of this video and that frame.
    Returns a one-line summary and the problems found (none: the ledger verifies).
    """
    path = find_ledger(run, ledger_name)
    video = None if (run / ledger_name).is_file() else run.name  # a workspace's: every video
    check = verify_chain(path)
    problems, events = check.problems, check.events
    by_id = events.set_index("event_id") if not events.empty else pd.DataFrame()
    dirs = round_dirs(run)
    for round_no, folder in dirs.items():
        table = folder / "annotations.parquet"
        recorded = pd.read_parquet(table) if table.is_file() else pd.DataFrame()
        for row in recorded.itertuples(index=False):
            where = f"round {round_no}, event {row.event_id}"
            if row.event_id not in by_id.index:
                problems.append(f"{where}: recorded by the round, missing from the ledger")
                continue
            held = by_id.loc[row.event_id]
            chain = getattr(row, "ledger_hash", None)
            if isinstance(chain, str) and chain != held["hash"]:
                problems.append(f"{where}: the ledger's event is not the one the round recorded")
            elif int(held["clicks"]) != int(row.clicks):
                problems.append(f"{where}: {held['clicks']} clicks in the ledger, "
                                f"{row.clicks} when the round recorded it")  # fmt: skip
        provenance = load_arrays(folder / "human.npz", "round state")["provenance"]
        for frame in range(provenance.shape[0]):
            for event_id in np.unique(provenance[frame]):
                if event_id == 0:
                    continue
                where = f"round {round_no}, frame {frame}, event {event_id}"
                if event_id not in by_id.index:
                    problems.append(f"{where}: labelled pixels name an event not in the ledger")
                    continue
                held = by_id.loc[event_id]
                if held["kind"] not in ("annotation", "correction"):
                    problems.append(f"{where}: labelled pixels name a {held['kind']} event")
                elif video is not None and held["video"] != video:
                    problems.append(f"{where}: labelled pixels name video {held['video']}'s event")
                elif pd.notna(held["frame"]) and int(held["frame"]) != frame:
                    problems.append(f"{where}: the ledger puts that event on frame "
                                    f"{int(held['frame'])}")  # fmt: skip
    before = f", {check.unchained} recorded before the chain" if check.unchained else ""
    summary = f"{check.chained} chained events{before}, {len(dirs)} rounds' events and provenance"
    return summary, problems
