"""Reading videos: a folder of frames (with optional label masks) or a video file.

Everything is validated on load so that a bad file is reported by name before any minutes of
flow or training are spent. Internally void is always 255, whatever id the dataset uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hvsa.data.chunks import META, Appender, ChunkStore, LazyFrames
from hvsa.data.images import check_declared, complete_image, declared_size, read_image
from hvsa.errors import HvsaError

VOID = 255
FRAME_EXTS = (".png", ".jpg", ".jpeg")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")
FRAME_CACHE_MB = 96  # decoded frames a lazily read video keeps (LazyFrames' cache)


@dataclass(frozen=True)
class ClassList:
    """Class names and display colours; index i of the lists is class id i."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __len__(self) -> int:
        return len(self.names)

    def palette(self) -> np.ndarray:
        """A 256×3 colour table (void and unused ids black) for colouring label maps."""
        table = np.zeros((256, 3), np.uint8)
        table[: len(self.colors)] = np.asarray(self.colors, np.uint8)
        return table

    def to_json(self) -> list[dict]:
        return [
            {"id": i, "name": n, "color": list(c)}
            for i, (n, c) in enumerate(zip(self.names, self.colors, strict=True))
        ]

    @classmethod
    def from_json(cls, items: list[dict]) -> ClassList:
        ordered = sorted(items, key=lambda c: int(c["id"]))
        if [int(c["id"]) for c in ordered] != list(range(len(ordered))):
            raise HvsaError("class ids must be 0..C-1 without gaps")
        return cls(
            names=tuple(str(c["name"]) for c in ordered),
            colors=tuple(tuple(int(v) for v in c["color"]) for c in ordered),
        )


@dataclass
class Video:
    """A video: frames (N,H,W,3) uint8 RGB, labels (N,H,W) uint8 or None.

    ``frames`` is an array in memory, or for a long video a :class:`LazyFrames` that reads
    them when indexed (``load_video``'s ``in_memory_mb``)."""

    path: Path
    frames: np.ndarray | LazyFrames
    frame_names: list[str]
    labels: np.ndarray | None
    classes: ClassList | None
    # the id the video's own class list gives "none" (labels here hold 255 whatever it is):
    # what label files made for this video use, e.g. existing labels read with ``--labels``
    void_id: int = VOID

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def read_classes_file(path: Path) -> tuple[ClassList, int]:
    """Read a classes.json ({"void": id, "classes": [{"id","name","color"}]})."""
    try:
        data = json.loads(path.read_text())
        classes = ClassList.from_json(data["classes"])
        void = int(data.get("void", VOID))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HvsaError(f"cannot read class list {path}: {exc}") from exc
    if not 0 <= void <= 255:
        raise HvsaError(f"class list {path}: void {void} is not a label value (0..255)")
    if void < len(classes):
        raise HvsaError(
            f"class list {path}: void {void} is the id of class {classes.names[void]!r}; "
            f"give void an id outside 0..{len(classes) - 1} (255 is usual)"
        )
    return classes, void


def write_classes_file(path: Path, classes: ClassList, void: int = VOID) -> None:
    path.write_text(json.dumps({"void": void, "classes": classes.to_json()}, indent=2) + "\n")


def find_classes_file(video_path: Path, name: str) -> Path | None:
    """classes.json in the video folder or one of its two parents (CamVid keeps it two up)."""
    base = video_path if video_path.is_dir() else video_path.parent
    for folder in (base, base.parent, base.parent.parent):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTS)


def _read_frames_folder(folder: Path) -> tuple[np.ndarray, list[str]]:
    files = _frame_files(folder)
    if not files:
        raise HvsaError(f"no frames (*.png, *.jpg) in {folder}")
    frames = []
    for path in tqdm(files, desc="read frames", leave=False, disable=len(files) < 50):
        image = read_image(path, cv2.IMREAD_COLOR)
        if frames and image.shape != frames[0].shape:
            raise HvsaError(
                f"frames differ in size: {path.name} is {image.shape[1]}x{image.shape[0]}, "
                f"{files[0].name} is {frames[0].shape[1]}x{frames[0].shape[0]}"
            )
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return np.stack(frames), [p.stem for p in files]


def _read_video_file(path: Path) -> tuple[np.ndarray, list[str]]:
    frames = list(_decode_stream(path))
    if not frames:
        raise HvsaError(f"cannot read any frame from video file {path}")
    return np.stack(frames), [f"{i:06d}" for i in range(len(frames))]


def _decode_stream(path: Path) -> Iterator[np.ndarray]:
    """A video file's frames (RGB) one at a time, as they are decoded."""
    capture = cv2.VideoCapture(os.fsdecode(path))
    try:
        while capture.isOpened():
            ok, image = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def cache_root() -> Path:
    """Where decoded frames of long video files are kept: ``$HVSA_CACHE``, else
    ``$XDG_CACHE_HOME/hvsa``, else ``~/.cache/hvsa``."""
    if os.environ.get("HVSA_CACHE"):
        return Path(os.environ["HVSA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hvsa"


def _stream_video_file(path: Path, probed: tuple[int, int, int]) -> LazyFrames:
    """A video file decoded once, as a stream, into a chunked store (``cache_root()``, keyed
    by the file's path, size and modification time), and read back a chunk at a time: never
    the whole video in memory. An interrupted decode starts over (a stream cannot seek)."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    folder = cache_root() / f"frames-{key.hexdigest()[:16]}"
    if (folder / META).is_file():
        return ChunkStore(folder).lazy(FRAME_CACHE_MB)
    _, h, w = probed
    out = Appender(folder, (h, w, 3), np.uint8, max(1, min(64, (16 << 20) // (h * w * 3))))
    bar = tqdm(total=probed[0], desc="decode frames", unit="frame", leave=False)
    for frame in _decode_stream(path):
        if frame.shape[:2] != (h, w):
            raise HvsaError(f"video file {path} changes frame size at frame {out.count}")
        out.append(frame)
        bar.update()
    bar.close()
    if out.count == 0:
        raise HvsaError(f"cannot read any frame from video file {path}")
    return out.close().lazy(FRAME_CACHE_MB)


def _lazy_frames_folder(folder: Path) -> tuple[LazyFrames, list[str]]:
    """A frames folder read a frame at a time when used: every file's header and end are
    checked first (size, complete), so a bad file is still named before any work starts."""
    files = _frame_files(folder)
    if not files:
        raise HvsaError(f"no frames (*.png, *.jpg) in {folder}")
    size = None
    for path in tqdm(files, desc="check frames", leave=False, disable=len(files) < 200):
        try:
            with path.open("rb") as f:
                head = f.read(1 << 16)
                f.seek(max(0, path.stat().st_size - 64))
                tail = f.read()
        except OSError as exc:
            raise HvsaError(f"cannot read image {path}: {exc.strerror}") from None
        declared = declared_size(head)
        check_declared(path, declared)
        if not complete_image(head[:16] + tail):
            raise HvsaError(f"image {path} is truncated (its file ends early)")
        if declared is not None and size is not None and declared != size:
            raise HvsaError(
                f"frames differ in size: {path.name} is {declared[1]}x{declared[0]}, "
                f"{files[0].name} is {size[1]}x{size[0]}"
            )
        size = size or declared
    first = cv2.cvtColor(read_image(files[0], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = first.shape[:2]

    def load(t: int) -> np.ndarray:
        image = cv2.cvtColor(read_image(files[t], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        if image.shape != (h, w, 3):
            raise HvsaError(f"frames differ in size: {files[t].name} is not {w}x{h}")
        return image[None]

    lazy = LazyFrames((len(files), h, w, 3), np.uint8, load, 1, FRAME_CACHE_MB)
    return lazy, [p.stem for p in files]


def _read_labels(
    folder: Path, frame_names: list[str], size: tuple[int, int], void: int, num_classes: int | None
) -> np.ndarray:
    files = _frame_files(folder)
    index = {name: i for i, name in enumerate(frame_names)}
    labels = np.full((len(frame_names), *size), VOID, np.uint8)
    for path in files:
        if path.stem not in index:
            raise HvsaError(f"label {path} has no frame of the same name")
        mask = read_image(path, cv2.IMREAD_UNCHANGED)
        if mask.ndim != 2:
            raise HvsaError(f"label {path} is not a single-channel class-index image")
        if mask.shape != size:
            raise HvsaError(
                f"label {path} is {mask.shape[1]}x{mask.shape[0]} but its frame is "
                f"{size[1]}x{size[0]}"
            )
        mask = mask.astype(np.int64)
        is_void = mask == void
        if num_classes is not None:
            bad = (~is_void) & ((mask < 0) | (mask >= num_classes))
            if bad.any():
                value = int(mask[bad][0])
                raise HvsaError(
                    f"label {path} holds value {value}, outside the class list "
                    f"(0..{num_classes - 1}, void {void})"
                )
        labels[index[path.stem]] = np.where(is_void, VOID, mask).astype(np.uint8)
    return labels


def probe_video(path: str | Path) -> tuple[int, int, int] | None:
    """(frames, height, width) of a video from file headers alone, before anything is decoded
    (None where the headers do not say): what a memory check needs before loading."""
    path = Path(path)
    if path.is_file():
        capture = cv2.VideoCapture(os.fsdecode(path))
        n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        w, h = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        capture.release()
        return (n, h, w) if n > 0 and h > 0 and w > 0 else None
    folder = path / "frames" if (path / "frames").is_dir() else path
    files = _frame_files(folder) if folder.is_dir() else []
    if not files:
        return None
    try:
        with files[0].open("rb") as f:
            size = declared_size(f.read(1 << 18))
    except OSError:
        return None
    check_declared(files[0], size)
    return (len(files), *size) if size else None


def reads_lazily(frames: int, height: int, width: int, in_memory_mb: float | None) -> bool:
    """Whether :func:`load_video` reads a video of this size a few frames at a time: its RGB
    frames take more than ``in_memory_mb`` (None: never)."""
    return in_memory_mb is not None and frames * height * width * 3 > in_memory_mb * 2**20


def load_video(
    path: str | Path,
    classes_file: str = "classes.json",
    void_id: int = VOID,
    in_memory_mb: float | None = None,
) -> Video:
    """Load a video folder (``frames/``, optional ``labels/``) or a video file.

    A folder may also hold the frames directly. The class list comes from ``classes_file``
    found beside the video (see :func:`find_classes_file`); its ``void`` id overrides
    ``void_id``. A video whose frames take more than ``in_memory_mb`` (``data.in_memory_mb``;
    None = no limit) is not read into memory: its frames are read when used, a few at a time
    (:class:`hvsa.data.chunks.LazyFrames`; a video file is decoded once into a chunked cache).
    """
    path = Path(path)
    if not path.exists():
        raise HvsaError(f"video not found: {path}")
    classes: ClassList | None = None
    found = find_classes_file(path, classes_file)
    if found is not None:
        classes, void_id = read_classes_file(found)
    probed = probe_video(path) if in_memory_mb is not None else None
    lazy = probed is not None and reads_lazily(*probed, in_memory_mb)
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTS:
            raise HvsaError(f"{path} is neither a frames folder nor a video file ({VIDEO_EXTS})")
        if lazy:
            frames = _stream_video_file(path, probed)
            names = [f"{i:06d}" for i in range(len(frames))]
        else:
            frames, names = _read_video_file(path)
        return Video(path, frames, names, None, classes, void_id)
    frames_dir = path / "frames" if (path / "frames").is_dir() else path
    frames, names = _lazy_frames_folder(frames_dir) if lazy else _read_frames_folder(frames_dir)
    labels = None
    if (path / "labels").is_dir() and _frame_files(path / "labels"):
        num = len(classes) if classes is not None else None
        labels = _read_labels(path / "labels", names, frames.shape[1:3], void_id, num)
    return Video(path, frames, names, labels, classes, void_id)


def start_classes(videos: list[Video], classes_file: str | Path | None = None) -> ClassList:
    """The class list a network started from nothing is built for: ``classes_file`` when given,
    else the classes.json found beside the videos (the same list for all of them)."""
    if classes_file is not None:
        return read_classes_file(Path(classes_file))[0]
    found = {v.classes.names: v.classes for v in videos if v.classes is not None}
    if not found:
        raise HvsaError(
            f"no --model and no classes.json beside {videos[0].path}: give the class list "
            '(a JSON file: {"void": 255, "classes": [{"id": 0, "name": "road", "color": '
            "[128, 64, 128]}, ...]}) with --classes FILE, or a starting network with --model"
        )
    if len(found) > 1:
        raise HvsaError("the videos' classes.json files differ: give one list with --classes FILE")
    return next(iter(found.values()))


def check_classes(video: Video, classes: ClassList) -> None:
    """Fail clearly when a network's class list cannot describe this video's labels."""
    if video.classes is not None and video.classes.names != classes.names:
        raise HvsaError(
            f"checkpoint classes {list(classes.names)} do not match the video's "
            f"{list(video.classes.names)}"
        )
    if video.labels is not None:
        present = np.unique(video.labels)
        bad = present[(present != VOID) & (present >= len(classes))]
        if bad.size:
            raise HvsaError(
                f"labels of {video.path} hold class {int(bad[0])}, but the checkpoint has only "
                f"{len(classes)} classes"
            )
