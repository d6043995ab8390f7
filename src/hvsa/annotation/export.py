"""A finished dataset out of a run or a campaign: ``hvsa export``.

The labels of a video are those of its last finished round (``round_NN/`` of ``hvsa run``,
``data/<video>/rN/`` of a workspace). An export holds, besides the frames and labels in the
chosen layout (``hvsa.data.label_formats``):

* ``classes.json``: the class list, as hvsa reads it;
* ``frames.parquet``: per frame, the share of pixels labelled by people (in frames and
  rectangles, and in class layers), who labelled them, and the round's estimated quality of
  the frame's labels (``RoundResult.frame_estimates``);
* ``card.json`` and ``README.md``, the dataset card: the video, rounds, the clicks the labels
  hold and the clicks the ledger paid, per annotator, the estimated mIoU with its interval and
  how it was made, the mIoU against ground truth where the video has some, the hvsa version and
  every setting the labels were made with.

The export is written into ``DIR.partial`` and renamed, so a ``DIR`` that exists is whole.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from hvsa import __version__
from hvsa.annotation.audit import round_dirs
from hvsa.annotation.existing import EXISTING_DIR, existing_meta
from hvsa.annotation.ledger import Ledger
from hvsa.data.arrays import load_arrays
from hvsa.data.images import read_image, shown
from hvsa.data.label_formats import FORMATS, LabelWriter
from hvsa.data.video import VOID, load_video, write_classes_file
from hvsa.errors import HvsaError
from hvsa.method.network import load_checkpoint

RUN_FILE = "run.json"
CAMPAIGN_FILE = "campaign.yaml"


def _videos(source: Path) -> list[dict]:
    """The videos ``source`` holds: a run folder, a workspace, or a workspace's data/<video>."""
    if (source / RUN_FILE).is_file():
        run = json.loads((source / RUN_FILE).read_text())
        return [{"key": Path(run["video"]).name if Path(run["video"]).is_dir()
                 else Path(run["video"]).stem, "folder": source, "video": Path(run["video"]),
                 "ledger_in": source, "settings": run.get("settings", {}),
                 "labels_from": run.get("labels_from")}]  # fmt: skip
    root, only = source, None
    if not (root / CAMPAIGN_FILE).is_file() and source.parent.name == "data":
        root, only = source.parent.parent, source.name
    if not (root / CAMPAIGN_FILE).is_file():
        raise HvsaError(f"{shown(source)} is neither the --out folder of `hvsa run` nor a "
                        "campaign workspace (or its data/<video>)")  # fmt: skip
    campaign = yaml.safe_load((root / CAMPAIGN_FILE).read_text()) or {}
    videos = campaign.get("videos", {})
    if only is not None and only not in videos:
        raise HvsaError(f"{shown(source)}: {only} is not a video of the campaign")
    params = root / "params.yaml"
    settings = yaml.safe_load(params.read_text()) if params.is_file() else {}
    flat = {f"{s}.{k}": v for s, values in (settings or {}).items() if isinstance(values, dict)
            for k, v in values.items()}  # fmt: skip
    return [
        {
            "key": key,
            "folder": root / "data" / key,
            "video": (root / item["path"]),
            "ledger_in": root / "data",
            "settings": flat,
            "labels_from": (existing_meta(root / "data" / key / EXISTING_DIR) or {}).get("source"),
            "campaign": campaign.get("name"),
        }  # fmt: skip
        for key, item in videos.items()
        if only is None or key == only
    ]


def _ledger_events(ledger_in: Path, ledger_name: str, key: str) -> pd.DataFrame:
    path = ledger_in / ledger_name
    if not path.is_file():
        return pd.DataFrame()
    with Ledger(path) as ledger:
        events = ledger.frame(kind="annotation")
    return events[events["video"] == key] if not events.empty else events


def _frame_table(
    folder: Path, names: list[str], metrics: dict, events: pd.DataFrame
) -> pd.DataFrame:
    state = load_arrays(folder / "human.npz", "round state")
    annotated, provenance = state["annotated"], state["provenance"]
    layers = state.get("layers")
    flat = provenance.reshape(len(provenance), -1)
    who = dict(zip(events.get("event_id", []), events.get("annotator", []), strict=True))
    estimates = metrics.get("frame_estimates") or [None] * len(names)
    rows = []
    for i, name in enumerate(names):
        ids = np.unique(flat[i][flat[i] > 0])
        by = sorted({str(who.get(int(e), "?")) for e in ids})
        in_layers = 0.0
        if layers is not None:
            in_layers = float(((layers[i] != VOID) & ~annotated[i]).mean())
        rows.append({
            "frame": i, "name": name,
            "labelled_by_people": float(annotated[i].mean()),
            "labelled_in_layers": in_layers,
            "annotators": ",".join(by),
            "estimated_quality": estimates[i],
        })  # fmt: skip
    return pd.DataFrame(rows)


def _card(item: dict, rounds: dict[int, Path], metrics: dict, events: pd.DataFrame,
          frames: pd.DataFrame, fmt: str, classes) -> dict:  # fmt: skip
    per_annotator = {}
    if not events.empty:
        grouped = events.groupby("annotator").agg(clicks=("clicks", "sum"),
                                                  events=("event_id", "count"))  # fmt: skip
        per_annotator = {str(k): {"clicks": int(r.clicks), "events": int(r.events)}
                         for k, r in grouped.iterrows()}  # fmt: skip
    interval = metrics.get("miou_interval")
    return {
        "video": item["key"],
        "video_path": str(item["video"]),
        "campaign": item.get("campaign"),
        "frames": len(frames),
        "classes": list(classes.names),
        "format": fmt,
        "round": metrics["round"],
        "rounds": len(rounds) - 1,
        "clicks_in_labels": metrics["clicks_total"],
        "clicks_paid": int(events["clicks"].sum()) if not events.empty else 0,
        "annotators": per_annotator,
        "labelled_by_people": float(frames["labelled_by_people"].mean()),
        "miou_estimate": metrics.get("miou_estimate"),
        "miou_interval": interval,
        "miou_estimate_from": metrics.get("miou_estimate_from"),
        "per_class_estimate": metrics.get("per_class_estimate"),
        "miou_against_ground_truth": metrics.get("miou"),
        "per_class_against_ground_truth": metrics.get("per_class") if metrics.get("miou") else None,
        "existing_labels": item.get("labels_from"),
        "hvsa_version": __version__,
        "settings": item["settings"],
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _readme(card: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"

    interval = card["miou_interval"]
    span = f" (interval {pct(interval[0])} – {pct(interval[1])})" if interval else ""
    who = "\n".join(f"| {k} | {v['clicks']:,} | {v['events']} |"
                    for k, v in card["annotators"].items()) or "| (none) | 0 | 0 |"  # fmt: skip
    truth = card["miou_against_ground_truth"]
    lines = [
        f"# {card['video']}: per-pixel labels of every frame",
        "",
        f"{card['frames']} frames, {len(card['classes'])} classes "
        f"({', '.join(card['classes'])}), layout `{card['format']}`, labels of round "
        f"{card['round']} of {card['rounds']}, made with hvsa {card['hvsa_version']} "
        f"(exported {card['exported']}).",
        "",
        f"- People labelled {pct(card['labelled_by_people'])} of the pixels; the rest was "
        "written by hvsa from their labels carried along the optical flow and the network "
        "adapted to this video.",
        f"- Estimated mIoU without ground truth: {pct(card['miou_estimate'])}{span}, "
        f"from `{card['miou_estimate_from']}`.",
        f"- mIoU against ground truth: {pct(truth)}." if truth is not None
        else "- No ground truth: the estimate is the only measure of quality.",
        f"- Clicks held by these labels: {card['clicks_in_labels']:,}; clicks the ledger "
        f"records for this video: {card['clicks_paid']:,}.",
        "",
        "| annotator | clicks | annotations |",
        "|---|---|---|",
        who,
        "",
        *_class_table(card),
        "Per frame (`frames.parquet`): the share labelled by people, in class layers, who "
        "labelled it, and the estimated quality. Every setting is in `card.json`.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _class_table(card: dict) -> list[str]:
    """Per class: the estimated IoU and, where the video has ground truth, the true one."""
    estimated = card.get("per_class_estimate") or {}
    truth = card.get("per_class_against_ground_truth") or {}
    if not estimated and not truth:
        return []

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"

    rows = [f"| {name} | {pct(estimated.get(name))} | {pct(truth.get(name))} |"
            for name in card["classes"]]  # fmt: skip
    return ["| class | estimated IoU | IoU against ground truth |", "|---|---|---|", *rows, ""]


def export_dataset(source: str | Path, out: str | Path, fmt: str, ledger_name: str) -> list[dict]:
    """Write the labels of every video ``source`` holds into ``out`` (one video: ``out``
    itself; a workspace's videos: ``out/<video>/``); returns each video's card."""
    if fmt not in FORMATS:
        raise HvsaError(f"unknown format {fmt!r}: {', '.join(FORMATS)}")
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise HvsaError(f"nothing to export at {shown(source)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HvsaError(f"{shown(out)} exists and is not empty: give a new folder")
    items = _videos(source)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cards = []
    for item in items:
        target = partial / item["key"] if len(items) > 1 else partial
        cards.append(_export_video(item, target, fmt, ledger_name))
    if out.exists():
        out.rmdir()
    partial.replace(out)
    return cards


def _export_video(item: dict, out: Path, fmt: str, ledger_name: str) -> dict:
    rounds = round_dirs(item["folder"])
    last = list(rounds.values())[-1]
    _, classes, _ = load_checkpoint(last / "model.pt", torch.device("cpu"))
    video = load_video(item["video"], item["settings"].get("data.classes_file", "classes.json"))
    metrics = json.loads((last / "metrics.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    writer = LabelWriter(out, fmt, item["key"], classes)
    for i, name in enumerate(tqdm(video.frame_names, desc=f"export {item['key']}", unit="frame")):
        labels = read_image(last / "labels" / f"{name}.png")
        writer.write(name, video.frames[i], labels)
    writer.close()
    write_classes_file(out / "classes.json", classes)
    events = _ledger_events(item["ledger_in"], ledger_name, item["key"])
    frames = _frame_table(last, video.frame_names, metrics, events)
    frames.to_parquet(out / "frames.parquet", index=False)
    card = _card(item, rounds, metrics, events, frames, fmt, classes)
    (out / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    (out / "README.md").write_text(_readme(card))
    return card
