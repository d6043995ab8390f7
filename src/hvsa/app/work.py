"""What the annotation app serves and takes in: open rounds, sample views, submitted patches.

A round is *open* when a campaign video with the human annotator has a selection for its current
round (the ``select`` stage ran) and its labels are not handed in yet. For each selected sample
the app shows the frame, the sample's region and a starting label: the labels hvsa wrote in the
previous round, so that the annotator corrects rather than draws. Each submitted sample is kept as a
part file until the round is complete; then the parts become the round's submission
(``hvsa.annotation.submission``), which the paused flow reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hvsa.annotation.annotator import Annotation
from hvsa.annotation.submission import check_patch, submission_paths, write_submission
from hvsa.app.store import RefusedError
from hvsa.campaign.workspace import Workspace, recorded_in_round
from hvsa.data.arrays import load_arrays
from hvsa.data.images import read_image
from hvsa.data.video import VOID, ClassList, Video
from hvsa.errors import HvsaError
from hvsa.method.auto import LAYERS
from hvsa.method.clicks import ClickCount
from hvsa.method.network import load_checkpoint
from hvsa.method.samples import SampleSet, load_samples, superpixel_segments

TOOLS = (
    "polygon",
    "edit",
    "cut",
    "brush",
    "eraser",
    "superpixel",
    "reassign",
    "accept",
    "absent",
    "import",
)


def parts_dir(ws: Workspace, video: str, round_no: int) -> Path:
    return ws.root / "inbox" / video / f"r{round_no}.parts"


def open_rounds(ws: Workspace) -> list[tuple[str, int]]:
    """(video, round) of every round that waits for human labels, the longest waiting first.

    Longest waiting first (by when the round's selection was written) is what keeps a campaign's
    videos moving evenly: the video whose flow has been paused longest gets its labels first and
    computes its next round while people label the others; taken in campaign order instead, the
    first videos would race ahead and the last ones' rounds would run alone at the end, with
    people waiting for them."""
    if ws.cfg.annotation.annotator != "human":
        return []
    out = []
    for key, round_no, npz, taken_in in _current_rounds(ws):
        # open once DVC has recorded the round's selection: recording it re-links
        # selected.parquet from DVC's cache, and a round listed before that could be read
        # between the two
        waiting = not taken_in and not npz.is_file()
        if waiting and recorded_in_round(ws.root, "select", key, round_no):
            try:
                since = (ws.round_dir(key, round_no) / "selected.parquet").stat().st_mtime
            except FileNotFoundError:  # being re-linked this instant: listed last
                since = float("inf")
            out.append((since, key, round_no))
    return [(key, round_no) for _, key, round_no in sorted(out)]


def handed_in_rounds(ws: Workspace) -> list[tuple[str, int, Path]]:
    """(video, round, submission) of every current round handed in (``inbox/V/rN.npz``) whose
    ``annotate`` has not taken it in yet: the rounds whose flow run should be resumed."""
    return [
        (key, round_no, npz)
        for key, round_no, npz, taken_in in _current_rounds(ws)
        if npz.is_file() and not taken_in
    ]


def _current_rounds(ws: Workspace):
    """(video, round, submission path, taken in) of each active video's current round."""
    for key, v in ws.campaign.videos.items():
        if v.status == "active" and v.round >= 1:
            npz, _ = submission_paths(ws.root / "inbox" / key, v.round)
            taken_in = (ws.round_dir(key, v.round) / "annotations.parquet").is_file()
            yield key, v.round, npz, taken_in


@dataclass
class RoundWork:
    """One open round of one video: its selection, frames and the network's prediction."""

    ws: Workspace
    video_key: str
    round: int
    _superpixels: dict[int, np.ndarray] = field(default_factory=dict)
    _prefill: dict[int, np.ndarray] = field(default_factory=dict)

    @cached_property
    def here(self) -> Path:
        return self.ws.round_dir(self.video_key, self.round)

    @cached_property
    def selected(self) -> pd.DataFrame:
        return pd.read_parquet(self.here / "selected.parquet")

    @property
    def order(self) -> list[int]:
        """Sample ids in the order the selection ranked them."""
        return [int(s) for s in self.selected["sample_id"]]

    @cached_property
    def granularity(self) -> str:
        """The sample set this round's selection is of (``auto`` chooses it each round)."""
        table = self.selected
        return str(table["granularity"].iloc[0]) if len(table) else "frame"

    @property
    def is_layers(self) -> bool:
        """A class-layer round: each task is one class in one whole frame."""
        return self.granularity == LAYERS

    @cached_property
    def samples(self) -> SampleSet:
        return load_samples(self.ws.sample_set(self.video_key, self.granularity))

    def region(self, sample_id: int) -> tuple[int, tuple[slice, slice], np.ndarray]:
        """(frame, box, mask in the box) of a sample — a class layer's is its whole frame."""
        if not self.is_layers:
            return self.samples.region(sample_id)
        frame = int(self._row(sample_id)["frame"])
        h, w = self.video.size
        return frame, (slice(0, h), slice(0, w)), np.ones((h, w), bool)

    def layer_class(self, sample_id: int) -> int | None:
        """The class a class-layer task asks for (None for a sample)."""
        return int(self._row(sample_id)["class_id"]) if self.is_layers else None

    def _row(self, sample_id: int) -> pd.Series:
        return self.selected.set_index("sample_id").loc[sample_id]

    @cached_property
    def video(self) -> Video:
        return self.ws.load_video(self.video_key)

    @cached_property
    def classes(self) -> ClassList:
        prev = self.ws.round_dir(self.video_key, self.ws.video(self.video_key).prev)
        _, classes, _ = load_checkpoint(prev / "model.pt", "cpu")
        return classes

    def check_sample(self, sample_id: int) -> None:
        if sample_id not in self.order:
            raise RefusedError(
                f"sample {sample_id} is not one of the samples of {self.video_key} "
                f"round {self.round}",
                404,
            )

    def describe(self, sample_id: int) -> dict:
        """What the page needs to lay a sample out."""
        self.check_sample(sample_id)
        frame, box, mask = self.region(sample_id)
        n = len(self.video)
        cls = self.layer_class(sample_id)
        layer = None if cls is None else {"class_id": cls, "class_name": self.classes.names[cls]}
        return {
            "video": self.video_key,
            "round": self.round,
            "sample_id": sample_id,
            "rank": self.order.index(sample_id),
            "of": len(self.order),
            "granularity": self.granularity,
            "layer": layer,
            "frame": frame,
            "frame_name": self.video.frame_names[frame],
            "frames": n,
            "size": list(self.video.size),
            "box": {"y0": box[0].start, "y1": box[0].stop, "x0": box[1].start, "x1": box[1].stop},
            "region_pixels": int(mask.sum()),
        }

    def frame_png(self, frame: int) -> bytes:
        if not 0 <= frame < len(self.video):
            raise RefusedError(f"frame {frame} is not in {self.video_key}", 404)
        return _png(cv2.cvtColor(self.video.frames[frame], cv2.COLOR_RGB2BGR))

    def region_png(self, sample_id: int) -> bytes:
        """The sample's region inside its box: 255 in, 0 out."""
        self.check_sample(sample_id)
        _, _, mask = self.region(sample_id)
        return _png(mask.astype(np.uint8) * 255)

    def prefill(self, sample_id: int) -> np.ndarray:
        """The labels hvsa wrote for the frame in the previous round — human labels carried
        along the flow and fused with the network — in the sample's box (void outside the
        region): what the annotator corrects rather than draws."""
        self.check_sample(sample_id)
        frame, box, mask = self.region(sample_id)
        if frame not in self._prefill:
            prev = self.ws.round_dir(self.video_key, self.ws.video(self.video_key).prev)
            path = prev / "labels" / f"{self.video.frame_names[frame]}.png"
            self._prefill[frame] = read_image(path)
        given = self._prefill[frame][box]
        cls = self.layer_class(sample_id)
        if cls is not None:  # a class layer starts from that class's pixels alone
            mask = given == cls
        return np.where(mask, given, VOID).astype(np.uint8)

    def prefill_png(self, sample_id: int) -> bytes:
        return _png(self.prefill(sample_id))

    def superpixels_png(self, sample_id: int) -> bytes:
        """Superpixel ids in the box, as RGB (id = R + 256·G): what superpixel fill snaps to."""
        self.check_sample(sample_id)
        frame, box, _ = self.region(sample_id)
        if frame not in self._superpixels:
            if self.granularity == "superpixel":
                seg = self.samples.segments[frame]
            else:
                s = self.ws.cfg.samples
                seg = superpixel_segments(self.video.frames[frame], s.superpixels, s.compactness)
            self._superpixels[frame] = seg.astype(np.int32)
        ids = self._superpixels[frame][box]
        rgb = np.stack([ids % 256, ids // 256 % 256, np.zeros_like(ids)], -1).astype(np.uint8)
        return _png(rgb[..., ::-1])

    def check_labels(self, sample_id: int, labels: np.ndarray) -> None:
        """Refuse labels of the wrong size, outside the region, or of an unknown class."""
        _, _, mask = self.region(sample_id)
        try:
            check_patch(sample_id, labels, mask, len(self.classes), self.layer_class(sample_id))
        except HvsaError as e:
            raise RefusedError(str(e), 422) from None

    def save_part(self, annotation: Annotation) -> None:
        """Keep one submitted sample until the round is complete (atomic write)."""
        folder = parts_dir(self.ws, self.video_key, self.round)
        folder.mkdir(parents=True, exist_ok=True)
        sid = annotation.sample_id
        tmp = folder / f"{sid}.tmp.npz"
        np.savez_compressed(tmp, labels=annotation.labels)
        meta = {
            "annotator": annotation.annotator, "tool": annotation.tool,
            "clicks": annotation.clicks.total, "started": annotation.started,
            "finished": annotation.finished, "detail": annotation.detail,
        }  # fmt: skip
        (folder / f"{sid}.json.tmp").write_text(json.dumps(meta))
        os.replace(folder / f"{sid}.json.tmp", folder / f"{sid}.json")
        os.replace(tmp, folder / f"{sid}.npz")

    def hand_in(self, annotations: list[Annotation] | None = None) -> Path:
        """Write the round's submission (``inbox/V/rN.npz`` and ``.json``): the given
        annotations (an import), or else the parts the app collected."""
        if annotations is not None:
            return write_submission(
                self.ws.root / "inbox" / self.video_key, self.round, annotations
            )
        folder = parts_dir(self.ws, self.video_key, self.round)
        annotations = []
        for sid in self.order:
            meta = json.loads((folder / f"{sid}.json").read_text())
            labels = load_arrays(folder / f"{sid}.npz", "saved labels")["labels"]
            frame, box, _ = self.region(sid)
            annotations.append(Annotation(
                sid, frame, box, labels, ClickCount(int(meta["clicks"]), 0, 0), meta["annotator"],
                meta["tool"], meta["started"], meta["finished"], meta["detail"],
                layer_class=self.layer_class(sid),
            ))  # fmt: skip
        return write_submission(self.ws.root / "inbox" / self.video_key, self.round, annotations)


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def current_round(ws: Workspace, video: str) -> RoundWork:
    """The open round of ``video``, or a clear refusal."""
    ws.video(video)
    for key, round_no in open_rounds(ws):
        if key == video:
            return RoundWork(ws, key, round_no)
    raise HvsaError(f"{video} has no round waiting for labels (annotation.annotator must be human)")
