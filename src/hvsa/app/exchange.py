"""Export a round's samples to CVAT or Label Studio, and import the finished masks back.

For teams that keep their own labelling tool. The export holds, per selected sample, the frame
cropped to the sample's box, the network's prediction as a pre-annotation (outside the sample's
region left empty), and the class list with its colours:

* ``cvat/``: a CVAT "Segmentation mask 1.1" dataset (``labelmap.txt``,
  ``ImageSets/Segmentation/default.txt``, ``SegmentationClass/<stem>.png``) and ``cvat.zip`` of
  it, to import as annotations into a task made of ``images/``;
* ``label_studio/``: ``tasks.json`` (one task per sample, the prediction as brush
  pre-annotations in Label Studio's RLE) and ``config.xml`` (the labelling interface).

Import reads the same layouts back (CVAT's mask export, or Label Studio's JSON export), checks
that every sample has a mask and every colour or label is a known class, clips each mask to its
sample's region (a crop shows pixels outside it; they are dropped and counted), and hands the
round in as the app does. The tools do not report clicks, so the click model prices the
imported labels, and the ledger marks them ``tool = import`` with the source tool.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hvsa.annotation.annotator import Annotation
from hvsa.app.resume import resume_waiting_run
from hvsa.app.store import app_store
from hvsa.app.work import RoundWork, current_round
from hvsa.campaign.workspace import Workspace
from hvsa.data.images import read_image
from hvsa.data.label_formats import (
    brush_labels,
    brush_results,
    cvat_labelmap,
    label_studio_config,
    label_studio_tasks,
)
from hvsa.data.video import VOID
from hvsa.errors import HvsaError
from hvsa.method.clicks import ClickCount, layer_clicks, region_clicks, superpixel_clicks

MANIFEST = "manifest.json"


def _stem(video: str, round_no: int, sample_id: int) -> str:
    return f"{video}_r{round_no}_s{sample_id}"


# ------------------------------------------------------------------ export
def export_round(work: RoundWork, out: Path) -> Path:
    """Write the round's samples for CVAT and Label Studio into ``out``; returns ``out``."""
    out = Path(out)
    classes = work.classes
    images, cvat = out / "images", out / "cvat"
    for folder in (images, cvat / "SegmentationClass", cvat / "ImageSets" / "Segmentation"):
        folder.mkdir(parents=True, exist_ok=True)
    palette = classes.palette()
    (cvat / "labelmap.txt").write_text(cvat_labelmap(classes))
    manifest, stems, tasks = [], [], []
    for sid in work.order:
        frame, box, _ = work.region(sid)
        stem = _stem(work.video_key, work.round, sid)
        crop = work.video.frames[frame][box]
        cv2.imwrite(str(images / f"{stem}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        prefill = work.prefill(sid)
        colour = np.where((prefill != VOID)[..., None], palette[prefill], 0).astype(np.uint8)
        cv2.imwrite(str(cvat / "SegmentationClass" / f"{stem}.png"), colour[..., ::-1])
        stems.append(stem)
        result = brush_results(prefill, classes)
        data = {"image": f"images/{stem}.png", "hvsa_sample": sid, "hvsa_video": work.video_key}
        data |= {"hvsa_round": work.round, "frame": work.video.frame_names[frame]}
        prediction = {"model_version": f"hvsa-r{work.round}", "result": result}
        tasks.append({"data": data, "predictions": [prediction]})
        y, x = box
        manifest.append({"sample_id": sid, "stem": stem, "frame": frame,
                         "box": [y.start, y.stop, x.start, x.stop]})  # fmt: skip
    (cvat / "ImageSets" / "Segmentation" / "default.txt").write_text("\n".join(stems) + "\n")
    shutil.make_archive(str(out / "cvat"), "zip", cvat)
    ls = out / "label_studio"
    ls.mkdir(exist_ok=True)
    (ls / "tasks.json").write_text(json.dumps(tasks) + "\n")
    (ls / "config.xml").write_text(label_studio_config(classes))
    info = {"video": work.video_key, "round": work.round, "samples": manifest}
    (out / MANIFEST).write_text(json.dumps(info, indent=2) + "\n")
    return out


# ------------------------------------------------------------------ import
# what an export of a round may hold besides one mask per sample (CVAT's metadata files)
_EXTRA_ENTRIES = 64
_EXTRA_BYTES = 1 << 20


def _box_shapes(work: RoundWork) -> dict[int, tuple[int, int]]:
    """Each sample's box (height, width): the size its mask must have."""
    return {sid: work.region(sid)[2].shape for sid in work.order}


def _unpacked_limit(shapes: dict[int, tuple[int, int]]) -> int:
    """Bytes an honest export of these samples can unpack to: every mask as raw RGB, twice
    (the crops of images/ ride along in CVAT's archive), plus its metadata."""
    return 2 * sum(3 * h * w + 1024 for h, w in shapes.values()) + _EXTRA_BYTES


def _unzip(source: Path, target: Path, shapes: dict[int, tuple[int, int]]) -> None:
    """Extract ``source`` into ``target`` within the round's limits: as many entries as the
    round has samples (plus metadata), at most :func:`_unpacked_limit` bytes as declared and
    as read, and no entry that would land outside ``target`` (zip-slip)."""
    import zipfile

    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise HvsaError(f"{source}: not a zip archive ({exc})") from None
    limit = _unpacked_limit(shapes)
    with archive:
        entries = archive.infolist()
        if len(entries) > 3 * len(shapes) + _EXTRA_ENTRIES:
            raise HvsaError(
                f"{source} holds {len(entries)} entries; a round of {len(shapes)} samples "
                f"needs at most {3 * len(shapes) + _EXTRA_ENTRIES}"
            )
        declared = sum(e.file_size for e in entries)
        if declared > limit:
            raise HvsaError(
                f"{source} unpacks to {declared:,} bytes; the round's masks need at most {limit:,}"
            )
        root = target.resolve()
        for entry in entries:
            name = entry.filename
            dest = (root / name).resolve()
            if (
                name.startswith(("/", "\\"))
                or ".." in Path(name).parts
                or root not in (dest, *dest.parents)
            ):
                raise HvsaError(f"{source}: entry {name!r} would be written outside the import")
        written = 0
        for entry in entries:
            if entry.is_dir():
                continue
            dest = root / entry.filename
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(entry) as src, dest.open("wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limit:
                            raise HvsaError(f"{source} unpacks to more than {limit:,} bytes")
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise HvsaError(f"{source}: entry {entry.filename!r} is damaged ({exc})") from None


def _cvat_masks(work: RoundWork, source: Path) -> dict[int, np.ndarray]:
    """Class-id masks from a CVAT segmentation-mask export (folder or zip)."""
    shapes = _box_shapes(work)
    if source.suffix == ".zip" and source.is_file():
        with tempfile.TemporaryDirectory(prefix="hvsa-import-") as tmp:
            _unzip(source, Path(tmp), shapes)
            return _cvat_folder(work, Path(tmp), shapes, source)
    return _cvat_folder(work, source, shapes, source)


def _cvat_folder(
    work: RoundWork, folder: Path, shapes: dict[int, tuple[int, int]], source: Path
) -> dict[int, np.ndarray]:
    masks = folder / "SegmentationClass"
    if not masks.is_dir():
        raise HvsaError(f"{source} is not a CVAT segmentation-mask export (no SegmentationClass/)")
    colours = {tuple(c): i for i, c in enumerate(work.classes.colors)}
    colours[(0, 0, 0)] = VOID  # CVAT's background: not labelled
    out = {}
    for sid in work.order:
        path = masks / f"{_stem(work.video_key, work.round, sid)}.png"
        if not path.is_file():
            continue
        h, w = shapes[sid]
        rgb = read_image(path, cv2.IMREAD_COLOR, max_pixels=h * w)[..., ::-1]
        found = {tuple(int(v) for v in c) for c in np.unique(rgb.reshape(-1, 3), axis=0)}
        unknown = sorted(found - set(colours))
        if unknown:
            raise HvsaError(f"{path.name}: colour {unknown[0]} is not a class of the labelmap")
        labels = np.full(rgb.shape[:2], VOID, np.uint8)
        for colour in found:
            labels[(rgb == colour).all(-1)] = colours[colour]
        out[sid] = labels
    return out


def _label_studio_masks(work: RoundWork, source: Path) -> dict[int, np.ndarray]:
    """Class-id masks from a Label Studio JSON export (the latest annotation of each task).

    Each brush result's declared size must be its sample's box before anything is allocated,
    and the file may be no larger than the round's masks could honestly need."""
    shapes = _box_shapes(work)
    limit = 4 * _unpacked_limit(shapes)
    try:
        size = source.stat().st_size
        if size > limit:
            raise HvsaError(
                f"{source}: {size:,} bytes, more than the round's {len(shapes)} masks can need "
                f"({limit:,})"
            )
        tasks = json.loads(source.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HvsaError(f"{source}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list):
        raise HvsaError(f"{source}: not a Label Studio JSON export (a list of tasks)")
    names = {n: i for i, n in enumerate(work.classes.names)}
    return label_studio_tasks(
        tasks, str(source), lambda task: _label_studio_task(task, names, shapes)
    )


def _label_studio_task(
    task: dict, names: dict[str, int], shapes: dict[int, tuple[int, int]]
) -> tuple[int, np.ndarray | None]:
    sid = task.get("data", {}).get("hvsa_sample")
    if sid is None or not task.get("annotations"):
        return -1, None
    sid = int(sid)
    if sid not in shapes:
        raise HvsaError(f"task of sample {sid}: not a sample of this round")
    results = task["annotations"][-1].get("result", [])
    labels = brush_labels(results, shapes[sid], names, f"task of sample {sid}", "the sample's box")
    return sid, labels


def import_round(work: RoundWork, source: Path, tool: str, annotator: str) -> tuple[list, int]:
    """Annotations of every sample of the round from a tool's export; also the dropped pixels.

    ``tool`` is ``cvat`` or ``label-studio``. Refused, changing nothing, when a sample has no
    mask or a mask has the wrong size; pixels outside a sample's region are dropped and counted.
    """
    readers = {"cvat": _cvat_masks, "label-studio": _label_studio_masks}
    if tool not in readers:
        raise HvsaError(f"unknown tool {tool!r}: cvat or label-studio")
    source = Path(source)
    if not source.exists():
        raise HvsaError(f"nothing to import at {source}")
    masks = readers[tool](work, source)
    missing = [sid for sid in work.order if sid not in masks]
    if missing:
        raise HvsaError(f"sample {missing[0]} of {work.video_key} round {work.round} has no mask")
    out, dropped, now = [], 0, time.time()
    tolerance = work.ws.cfg.annotation.polygon_tolerance
    for sid in work.order:
        frame, box, region = work.region(sid)
        labels = masks[sid]
        if labels.shape != region.shape:
            raise HvsaError(
                f"sample {sid}: the mask is {labels.shape[1]}×{labels.shape[0]}, "
                f"the sample's box {region.shape[1]}×{region.shape[0]}"
            )
        dropped += int(((labels != VOID) & ~region).sum())
        labels = np.where(region, labels, VOID).astype(np.uint8)
        work.check_labels(sid, labels)
        cls = work.layer_class(sid)
        if cls is not None:  # a class layer: that class's regions in the whole frame
            clicks = layer_clicks(labels, cls, tolerance)
        elif work.granularity == "superpixel":
            clicks = superpixel_clicks()
        else:
            clicks = region_clicks(labels, tolerance)
        detail = {"clicks_by_tool": {"import": clicks.total}, "source": tool}
        out.append(Annotation(
            sid, frame, box, labels, ClickCount(clicks.total, 0, 0), annotator, "import",
            now, now, detail, cls,
        ))  # fmt: skip
    return out, dropped


def import_labels(
    root: Path, video: str, source: Path, tool: str, annotator: str, resume=None
) -> dict:
    """Hand a round in from a CVAT / Label Studio export; refused if the app took part of it."""
    ws = Workspace.open(root)
    work = current_round(ws, video)
    annotations, dropped = import_round(work, source, tool, annotator)
    store = app_store(ws)
    with store.transaction() as db:
        begun = store.submitted(db, video, work.round)
        if begun:
            raise HvsaError(
                f"{len(begun)} samples of {video} round {work.round} were labelled in the app: "
                "finish the round there"
            )
        if not store.close_round(db, video, work.round):
            raise HvsaError(f"{video} round {work.round} is handed in already")
        submission = work.hand_in(annotations)
    rel = str(submission.relative_to(ws.root))
    answer = {
        "round": work.round, "samples": len(annotations), "dropped_pixels": dropped,
        "clicks": sum(a.clicks.total for a in annotations), "submission": rel,
    }  # fmt: skip
    try:
        answer["resumed_flow_run"] = (resume or resume_waiting_run)(ws.root, video, work.round, rel)
    except Exception as exc:  # the labels are handed in; the flow can be resumed by hand
        answer["resumed_flow_run"], answer["resume_error"] = None, f"{type(exc).__name__}: {exc}"
    return answer
