"""Labels submitted by human annotators for a round, and the annotator that reads them.

A submission for round N of video V lives in the workspace's ``inbox/V/``: ``rN.npz`` holds one
label patch per sample (``labels_<sample id>``, the sample's bounding box, 255 outside its
region) and ``rN.json`` who made them with which tool, the clicks counted at the source and the
times. It is checked before anything is recorded: every selected sample exactly once, no other
sample, patch sizes, no label outside a sample's region, class ids in the class list.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hvsa.annotation.annotator import Annotation, layer_id
from hvsa.data.arrays import Arrays, load_arrays
from hvsa.data.video import VOID, Video
from hvsa.errors import HvsaError
from hvsa.method.clicks import ClickCount
from hvsa.method.samples import SampleSet


def submission_paths(inbox: Path, round_no: int) -> tuple[Path, Path]:
    return inbox / f"r{round_no}.npz", inbox / f"r{round_no}.json"


def write_submission(inbox: Path, round_no: int, annotations: list[Annotation]) -> Path:
    """Write a round's submission (what the annotation app, or a test, hands in)."""
    inbox.mkdir(parents=True, exist_ok=True)
    npz, meta = submission_paths(inbox, round_no)
    np.savez_compressed(npz, **{f"labels_{a.sample_id}": a.labels for a in annotations})
    info = {
        str(a.sample_id): {
            "annotator": a.annotator, "tool": a.tool, "clicks": a.clicks.total,
            "started": a.started, "finished": a.finished, "detail": a.detail,
            # the click model's breakdown, where the clicks were priced by it (the oracle)
            **({"breakdown": list(_parts(a.clicks))} if a.clicks.total != a.clicks.regions else {}),
        }
        for a in annotations
    }  # fmt: skip
    meta.write_text(json.dumps(info, indent=2) + "\n")
    return npz


def check_patch(
    sample_id: int,
    patch: np.ndarray,
    mask: np.ndarray,
    num_classes: int,
    layer_class: int | None = None,
) -> None:
    """Refuse a sample's labels of the wrong size, outside its region or of an unknown class;
    a class layer's (``layer_class``) of any class but its own.

    One check for every way labels come in (submission files, the web app), so that no source
    can write a label the others would refuse.
    """
    if patch.shape != mask.shape:
        got = f"{patch.shape[1]}×{patch.shape[0]}" if patch.ndim == 2 else f"of shape {patch.shape}"
        raise HvsaError(
            f"sample {sample_id}: labels are {got}, "
            f"the sample's box is {mask.shape[1]}×{mask.shape[0]}"
        )
    if (patch[~mask] != VOID).any():
        raise HvsaError(f"sample {sample_id}: labels outside the sample's region are refused")
    bad = (patch != VOID) & (patch >= num_classes)
    if bad.any():
        raise HvsaError(f"sample {sample_id}: class {int(patch[bad][0])} is not in the list")
    if layer_class is not None:
        other = (patch != VOID) & (patch != layer_class)
        if other.any():
            raise HvsaError(
                f"sample {sample_id}: a layer of class {layer_class} holds class "
                f"{int(patch[other][0])}: draw that class only, or mark it absent"
            )


class SubmittedAnnotator:
    """Reads a human submission for the requested samples or class layers, refusing anything
    inconsistent."""

    name = "human"

    def __init__(self, inbox: Path, round_no: int, num_classes: int):
        self.inbox, self.round_no, self.num_classes = inbox, round_no, num_classes

    def _read(self, wanted: list[int]) -> tuple[Arrays, dict[int, dict]]:
        """The round's patches and their records, once every id of ``wanted`` is in them."""
        npz, meta = submission_paths(self.inbox, self.round_no)
        if not npz.is_file() or not meta.is_file():
            raise HvsaError(
                f"the labels of round {self.round_no} are not submitted yet (expected {npz})"
            )
        patches = load_arrays(npz, "submitted labels")
        try:
            info = {int(k): v for k, v in json.loads(meta.read_text()).items()}
        except (ValueError, AttributeError, UnicodeDecodeError) as exc:
            raise HvsaError(f"{meta} is damaged ({exc})") from None
        given = {int(k.removeprefix("labels_")) for k in patches.files}
        if given != set(info):
            raise HvsaError(f"{npz} and {meta.name} list different samples")
        extra = sorted(given - set(wanted))
        missing = sorted(set(wanted) - given)
        if extra:
            raise HvsaError(f"sample {extra[0]} was not assigned in round {self.round_no}")
        if missing:
            raise HvsaError(f"sample {missing[0]} of round {self.round_no} has no labels")
        return patches, info

    def _annotation(self, sid, frame, box, mask, patches, info, layer_class=None) -> Annotation:
        patch = patches[f"labels_{sid}"]
        check_patch(sid, patch, mask, self.num_classes, layer_class)
        row = info[sid]
        clicks = int(row["clicks"])
        if clicks < 0:
            raise HvsaError(f"sample {sid}: negative click count")
        count = ClickCount(clicks, 0, 0)
        if "breakdown" in row:  # regions, vertices, crossings of the click model
            count = ClickCount(*(int(v) for v in row["breakdown"]))
            if count.total != clicks or min(_parts(count)) < 0:
                raise HvsaError(f"sample {sid}: the click breakdown does not add up to {clicks}")
        return Annotation(
            sid, frame, box, patch.astype(np.uint8), count,
            str(row["annotator"]), str(row["tool"]), float(row["started"]),
            float(row["finished"]), _detail(row.get("detail"), clicks, sid), layer_class,
        )  # fmt: skip

    def annotate(
        self, video: Video, samples: SampleSet, sample_ids: list[int], prefill=None
    ) -> list[Annotation]:
        """The samples' labels as handed in (the prefill was the person's to correct)."""
        patches, info = self._read(sample_ids)
        return [self._annotation(sid, *samples.region(sid), patches, info) for sid in sample_ids]

    def annotate_layers(
        self, video: Video, layers: list[tuple[int, int]], num_classes: int, prefill=None
    ) -> list[Annotation]:
        """Class layers as a person drew them (the annotation app's layer tasks): one patch
        over the whole frame per (frame, class), that class or nothing — an empty patch says
        the class is absent from the frame."""
        ids = [layer_id(f, c, num_classes) for f, c in layers]
        patches, info = self._read(ids)
        h, w = video.size
        box, mask = (slice(0, h), slice(0, w)), np.ones((h, w), bool)
        return [
            self._annotation(sid, frame, box, mask, patches, info, cls)
            for sid, (frame, cls) in zip(ids, layers, strict=True)
        ]


def _detail(detail: object, clicks: int, sample_id: int) -> dict | None:
    """Clicks by tool as the source counted them; they must add up to the click total."""
    if detail is None:
        return None
    if not isinstance(detail, dict):
        raise HvsaError(f"sample {sample_id}: 'detail' must be a mapping of tool to clicks")
    by_tool = detail.get("clicks_by_tool", {})
    if any(not isinstance(v, int) or v < 0 for v in by_tool.values()):
        raise HvsaError(f"sample {sample_id}: clicks by tool must be counts (whole, not negative)")
    if sum(by_tool.values()) != clicks:
        raise HvsaError(
            f"sample {sample_id}: clicks by tool add up to {sum(by_tool.values())}, not {clicks}"
        )
    return {**by_tool, **{k: v for k, v in detail.items() if k != "clicks_by_tool"}}


def _parts(count: ClickCount) -> tuple[int, int, int]:
    return count.regions, count.vertices, count.crossings
