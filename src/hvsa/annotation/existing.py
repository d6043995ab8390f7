"""Labels a team already has, entering a run as human labels before round 1.

Some frames done in CVAT or Label Studio, a previous pass, a folder of label PNGs: they are
people's work, so they become ledger events like any other (``tool = import``, the source and
its format in the event), and every pixel they give names its event in the provenance maps:
``hvsa audit`` answers "who labelled this pixel" for them as for the rounds' labels.

Their clicks are what the team says they cost: ``none`` (unknown, 0 clicks; the default, as
the work was paid elsewhere), a declared total (split over the frames by labelled pixels), or
``model`` (priced by hvsa's click model, as if drawn from nothing: what a benchmark that counts
them must charge).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvsa.annotation.ledger import Event
from hvsa.data.label_formats import read_labels
from hvsa.data.video import VOID, ClassList, Video
from hvsa.errors import HvsaError
from hvsa.method.clicks import region_clicks

TOOL = "import"


@dataclass
class ExistingLabels:
    """Whole-frame labels of some frames (frame index → (H,W) uint8, 255 = none) and where they
    came from."""

    source: str
    fmt: str
    labels: dict[int, np.ndarray]
    annotator: str
    clicks: str  # "none", "model" or a declared total as text

    def digest(self) -> str:
        """What identifies them: a run resumes only with the same labels."""
        h = hashlib.sha256(json.dumps([self.fmt, self.annotator, self.clicks]).encode())
        for frame in sorted(self.labels):
            h.update(np.int64(frame).tobytes())
            h.update(np.ascontiguousarray(self.labels[frame]).tobytes())
        return h.hexdigest()

    def frame_clicks(self, tolerance: float) -> dict[int, int]:
        """The clicks each frame is charged (see the module docstring)."""
        frames = sorted(self.labels)
        if self.clicks == "none":
            return dict.fromkeys(frames, 0)
        if self.clicks == "model":
            return {f: region_clicks(self.labels[f], tolerance).total for f in frames}
        total = int(self.clicks)
        pixels = np.asarray([(self.labels[f] != VOID).sum() for f in frames], float)
        share = total * pixels / max(pixels.sum(), 1)
        out = np.floor(share).astype(int)
        # largest remainders, so that the frames' clicks add up to the declared total
        out[np.argsort(-(share - out), kind="stable")[: total - out.sum()]] += 1
        return dict(zip(frames, out.tolist(), strict=True))


def parse_clicks(text: str) -> str:
    """``none``, ``model`` or a whole number of clicks ≥ 0 (the declared total)."""
    text = str(text).strip()
    if text in ("none", "model") or (text.isdigit() and len(text) <= 12):
        return text
    raise HvsaError(f"--labels-clicks {text!r}: none, model, or the total clicks they cost")


def load_existing(
    source: str | Path,
    video: Video,
    classes: ClassList,
    fmt: str = "auto",
    annotator: str = TOOL,
    clicks: str = "none",
    void: int = VOID,
) -> ExistingLabels:
    """Read labels of ``video``'s frames from ``source`` (see ``hvsa.data.label_formats``;
    ``void``: the class list's id for none in class-index images)."""
    fmt, labels = read_labels(source, video.frame_names, video.size, classes, fmt, void)
    empty = [video.frame_names[f] for f, lab in labels.items() if (lab == VOID).all()]
    labels = {f: lab for f, lab in labels.items() if (lab != VOID).any()}
    if not labels:
        raise HvsaError(f"the labels in {source} label no pixel (frames {', '.join(empty[:3])})")
    return ExistingLabels(str(Path(source).resolve()), fmt, labels, annotator, parse_clicks(clicks))


def existing_events(
    existing: ExistingLabels,
    video: Video,
    classes: ClassList,
    campaign: str,
    video_key: str,
    tolerance: float,
) -> list[Event]:
    """One ledger event per imported frame, in round 0, keyed by the labels themselves (a run
    resumed after a crash records them once)."""
    now = time.time()
    clicks = existing.frame_clicks(tolerance)
    h, w = video.size
    events = []
    for frame in sorted(existing.labels):
        labels = existing.labels[frame]
        digest = hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()
        values, counts = np.unique(labels[labels != VOID], return_counts=True)
        events.append(
            Event(
                kind="annotation", campaign=campaign, video=video_key, round=0,
                frame=frame, frame_name=video.frame_names[frame],
                geometry={"kind": "frame", "segment": -1, "x0": 0, "y0": 0, "x1": w, "y1": h},
                annotator=existing.annotator, tool=TOOL, clicks=clicks[frame],
                clicks_detail={"import": clicks[frame], "priced": existing.clicks,
                               "source": existing.source, "format": existing.fmt},
                class_pixels={classes.names[int(v)]: int(c)
                              for v, c in zip(values, counts, strict=True)},
                started=now, finished=now, label_hash=digest,
                note=f"existing labels from {existing.source} ({existing.fmt})",
                idempotency_key=f"{campaign}/{video_key}/import/{frame}/{digest}",
            )
        )  # fmt: skip
    return events


# a campaign video keeps its existing labels in data/<video>/EXISTING_DIR, written by save_existing
EXISTING_DIR = "existing"
LABELS_FILE, META_FILE = "labels.npz", "existing.json"


def save_existing(folder: Path, existing: ExistingLabels | None) -> None:
    """Write ``existing`` into ``folder`` (a campaign keeps them beside the video's rounds, where
    its start stage reads them); ``None`` writes an empty set, so every video has the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = sorted(existing.labels) if existing is not None else []
    stack = (np.stack([existing.labels[f] for f in frames]) if frames
             else np.zeros((0, 1, 1), np.uint8))  # fmt: skip
    np.savez_compressed(folder / LABELS_FILE, frames=np.asarray(frames, np.int64), labels=stack)
    meta = {"frames": len(frames)}
    if existing is not None:
        meta |= {"source": existing.source, "format": existing.fmt,
                 "annotator": existing.annotator, "clicks": existing.clicks,
                 "digest": existing.digest()}  # fmt: skip
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def existing_meta(folder: Path) -> dict | None:
    """Where the labels :func:`save_existing` wrote into ``folder`` came from (``source``,
    ``format``, ``annotator``, ``clicks``), without reading them; None where it holds none."""
    path = folder / META_FILE
    meta = json.loads(path.read_text()) if path.is_file() else {}
    return meta if meta.get("frames") else None


def read_existing(folder: Path) -> ExistingLabels | None:
    """What :func:`save_existing` wrote; None where the folder is missing or holds no frame."""
    if (meta := existing_meta(folder)) is None:
        return None
    with np.load(folder / LABELS_FILE) as data:
        labels = {int(f): data["labels"][i] for i, f in enumerate(data["frames"])}
    return ExistingLabels(meta["source"], meta["format"], labels, meta["annotator"],
                          meta["clicks"])  # fmt: skip
