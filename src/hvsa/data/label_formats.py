"""Whole-frame label files in the layouts other tools read and write.

Labels a team already has enter a run from these layouts, and ``hvsa export`` writes a video's
labels in them:

* ``index``: single-channel class-index PNGs, one per frame (``<frame>.png``, 255 = none);
* ``color``: RGB PNGs in the class list's colours (black, when no class has it, = none);
* ``cityscapes``: ``gtFine/train/<video>/<frame>_gtFine_labelIds.png`` (class indices of this
  class list, not Cityscapes' own ids) and ``<frame>_gtFine_color.png``, frames in
  ``leftImg8bit/train/<video>/<frame>_leftImg8bit.png``;
* ``cvat``: CVAT's "Segmentation mask 1.1" (``labelmap.txt``, ``SegmentationClass/<frame>.png``,
  ``ImageSets/Segmentation/default.txt``, frames in ``JPEGImages/``), as a folder or a zip;
* ``label-studio``: a Label Studio JSON export (one task per frame, brush labels in its RLE)
  and the labelling interface ``config.xml``.

Reading matches classes by colour (``color``), by name (CVAT's labelmap, Label Studio's brush
labels) or by index, and files to frames by name: a colour, name, value or file that matches
nothing is refused by name, never guessed. Sizes are checked against the frame before anything
is decoded, and a zip is read entry by entry without extracting it.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from hvsa.data.images import decode_image, read_image, shown, write_image
from hvsa.data.video import VOID, ClassList
from hvsa.errors import HvsaError

FORMATS = ("index", "color", "cityscapes", "cvat", "label-studio")
CITYSCAPES_SPLIT = "train"
_SUFFIXES = ("_gtFine_labelIds", "_gtFine_color", "_leftImg8bit")
BACKGROUND = "background"  # CVAT's name for pixels no label covers


# ------------------------------------------------------------------ Label Studio's brush RLE
class _Bits:
    """Big-endian bit reader over bytes (the layout of thi-ng's rle-pack, used by Label Studio)."""

    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(bytes(data), np.uint8))
        self.i = 0

    def read(self, n: int) -> int:
        chunk = self.bits[self.i : self.i + n]
        if len(chunk) < n:
            raise HvsaError("Label Studio RLE ends early: the mask is truncated")
        self.i += n
        return int("".join(map(str, chunk)) or "0", 2)


def decode_rle(rle: list[int], expected: int | None = None) -> np.ndarray:
    """Label Studio brush RLE → the flat array it encodes (RGBA bytes of the mask image).

    ``expected``: the length it must declare, checked before anything is allocated."""
    bits = _Bits(bytes(rle))
    num = bits.read(32)
    if expected is not None and num != expected:
        raise HvsaError(f"a brush mask holds {num // 4} pixels, not {expected // 4}")
    word = bits.read(5) + 1
    sizes = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        repeat = bits.read(1)
        j = i + 1 + bits.read(sizes[bits.read(2)])
        if repeat:
            out[i:j] = bits.read(word)
        else:
            for k in range(i, j):
                out[k] = bits.read(word)
        i = j
    return out


def encode_rle(flat: np.ndarray) -> list[int]:
    """The inverse of :func:`decode_rle`, with repeat runs only (valid for Label Studio)."""
    flat = np.asarray(flat, np.uint8).ravel()
    sizes = [3, 6, 10, 16]  # bits of a run length, chosen per run
    out = [format(len(flat), "032b"), format(7, "05b"), *(format(s - 1, "04b") for s in sizes)]
    change = np.flatnonzero(np.diff(flat)) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(flat)]
    for s, e in zip(starts, ends, strict=True):
        while s < e:
            n = min(e - s, 1 << sizes[-1])
            k = next(k for k, b in enumerate(sizes) if n - 1 < 1 << b)
            out.append(f"1{k:02b}{n - 1:0{sizes[k]}b}{int(flat[s]):08b}")
            s += n
    bits = "".join(out)
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A boolean (H,W) mask as Label Studio stores a brush stroke (RGBA, alpha = the mask)."""
    return encode_rle(np.repeat(mask.astype(np.uint8).ravel() * 255, 4))


def rle_to_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    flat = decode_rle(rle, height * width * 4)
    return flat.reshape(height, width, 4)[..., 3] > 127


def brush_results(labels: np.ndarray, classes: ClassList) -> list[dict]:
    """A label map as Label Studio's brush results, one per class present."""
    h, w = labels.shape
    return [
        {
            "from_name": "label", "to_name": "image", "type": "brushlabels",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask_to_rle(labels == c),
                      "brushlabels": [classes.names[c]]},
        }
        for c in np.unique(labels[labels != VOID]).tolist()
    ]  # fmt: skip


def label_studio_config(classes: ClassList) -> str:
    """Label Studio's labelling interface for the class list (brush labels over an image)."""
    labels = "\n".join(
        f'    <Label value="{n}" background="#{c[0]:02x}{c[1]:02x}{c[2]:02x}"/>'
        for n, c in zip(classes.names, classes.colors, strict=True)
    )
    return (
        '<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
        f'  <BrushLabels name="label" toName="image">\n{labels}\n  </BrushLabels>\n</View>\n'
    )


# ------------------------------------------------------------------ colours
def cvat_labelmap(classes: ClassList) -> str:
    lines = ["# label:color_rgb:parts:actions", f"{BACKGROUND}:0,0,0::"]
    named = zip(classes.names, classes.colors, strict=True)
    lines += [f"{n}:{','.join(map(str, c))}::" for n, c in named]
    return "\n".join(lines) + "\n"


def parse_labelmap(text: str, classes: ClassList, where: str) -> dict[tuple, int]:
    """CVAT's ``labelmap.txt`` → colour → class id (``background`` → none), matched by name."""
    ids = {n: i for i, n in enumerate(classes.names)}
    out: dict[tuple, int] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        try:
            colour = tuple(int(v) for v in rest.split(":")[0].split(","))
        except ValueError:
            raise HvsaError(f"{where}: labelmap line {line!r} has no r,g,b colour") from None
        if len(colour) != 3:
            raise HvsaError(f"{where}: labelmap line {line!r} has no r,g,b colour")
        if name == BACKGROUND:
            out[colour] = VOID
        elif name in ids:
            out[colour] = ids[name]
        else:
            raise HvsaError(f"{where}: label {name!r} of labelmap.txt is not a class "
                            f"({', '.join(classes.names)})")  # fmt: skip
    return out


def class_colours(classes: ClassList) -> dict[tuple, int]:
    """Colour → class id of the class list; black means none unless a class is black."""
    out: dict[tuple, int] = {(0, 0, 0): VOID}
    out |= {tuple(int(v) for v in c): i for i, c in enumerate(classes.colors)}
    return out


def rgb_to_index(rgb: np.ndarray, colours: dict[tuple, int], where: str) -> np.ndarray:
    """An (H,W,3) RGB label image → class ids, refusing a colour that names no class."""
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    known = {(r << 16) | (g << 8) | b: i for (r, g, b), i in colours.items()}
    values, inverse = np.unique(code, return_inverse=True)
    unknown = [int(v) for v in values if int(v) not in known]
    if unknown:
        v = unknown[0]
        rgb_of = (v >> 16, (v >> 8) & 255, v & 255)
        raise HvsaError(f"{where}: colour {rgb_of} is no class's colour")
    lut = np.asarray([known[int(v)] for v in values], np.uint8)
    return lut[inverse.reshape(code.shape)]


def check_index(labels: np.ndarray, num_classes: int, where: str, void: int = VOID) -> np.ndarray:
    """Class indices of a label image, its ``void`` value as 255; refused if a value is no class."""
    if labels.dtype != np.uint8:
        raise HvsaError(f"{where} is not an 8-bit class-index image")
    labels = np.where(labels == void, VOID, labels).astype(np.uint8)
    bad = (labels != VOID) & (labels >= num_classes)
    if bad.any():
        raise HvsaError(f"{where} holds value {int(labels[bad][0])}, outside the class list "
                        f"(0..{num_classes - 1}, {VOID} = none)")  # fmt: skip
    return labels


# ------------------------------------------------------------------ reading
class _Source:
    """Files of a folder or entries of a zip, by relative path, read with a size cap."""

    def __init__(self, path: Path, max_bytes: int):
        self.path, self.max_bytes = path, max_bytes
        self.zip = zipfile.ZipFile(path) if path.is_file() else None

    def names(self) -> list[str]:
        if self.zip is not None:
            return [i.filename for i in self.zip.infolist() if not i.is_dir()]
        return [str(p.relative_to(self.path)) for p in sorted(self.path.rglob("*")) if p.is_file()]

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            info = self.zip.getinfo(name)
            if info.file_size > self.max_bytes:
                raise HvsaError(f"{shown(self.path)}: {name} unpacks to {info.file_size:,} bytes, "
                                f"more than a frame's label can need")  # fmt: skip
            return self.zip.read(name)
        path = self.path / name
        if path.stat().st_size > self.max_bytes:
            raise HvsaError(f"{shown(path)}: larger than a frame's label can need")
        return path.read_bytes()

    def where(self, name: str) -> str:
        return f"{shown(self.path)}:{name}" if self.zip is not None else shown(self.path / name)


def frame_of(stem: str, index: dict[str, int]) -> int | None:
    """The frame a label file's stem names: the frame name itself, or it with a Cityscapes
    suffix or Label Studio's upload prefix (``1a2b3c4d-``)."""
    for suffix in _SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if stem in index:
        return index[stem]
    head, sep, rest = stem.partition("-")
    return index.get(rest) if sep and len(head) == 8 else None


def detect_format(source: Path) -> str:
    """The layout of an export, from its files: see the module docstring."""
    if source.is_file():
        if source.suffix.lower() == ".json":
            return "label-studio"
        if zipfile.is_zipfile(source):
            return "cvat"
        raise HvsaError(f"{shown(source)}: neither a folder, a zip nor a JSON export of labels")
    if (source / "SegmentationClass").is_dir():
        return "cvat"
    if (source / "gtFine").is_dir():
        return "cityscapes"
    if (source / "tasks.json").is_file():
        return "label-studio"
    folder = source / "labels" if (source / "labels").is_dir() else source
    first = next(iter(sorted(folder.glob("*.png"))), None)
    if first is None:
        raise HvsaError(f"{shown(source)} holds no label PNGs, CVAT or Label Studio export")
    return "index" if read_image(first).ndim == 2 else "color"


def read_labels(
    source: str | Path,
    frame_names: list[str],
    size: tuple[int, int],
    classes: ClassList,
    fmt: str = "auto",
    void: int = VOID,
) -> tuple[str, dict[int, np.ndarray]]:
    """Labels of some frames from an export: (its format, frame index → (H,W) uint8 class ids,
    255 where none). Every file must name a frame, be the frame's size and hold only classes;
    in class-index images ``void`` (the class list's, e.g. CamVid's 11) means none."""
    source = Path(source)
    if not source.exists():
        raise HvsaError(f"no labels at {shown(source)}")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise HvsaError(f"unknown label format {fmt!r}: auto, {', '.join(FORMATS)}")
    index = {n: i for i, n in enumerate(frame_names)}
    if fmt == "label-studio":
        found = _label_studio(source, index, size, classes)
    else:
        try:
            found = dict(_label_images(source, fmt, index, size, classes, void))
        except zipfile.BadZipFile:
            raise HvsaError(f"{shown(source)}: not a readable zip") from None
    if not found:
        raise HvsaError(f"{shown(source)} ({fmt}) holds no labels of this video's frames")
    return fmt, found


def _label_images(
    source: Path,
    fmt: str,
    index: dict[str, int],
    size: tuple[int, int],
    classes: ClassList,
    void: int,
) -> Iterator[tuple[int, np.ndarray]]:
    h, w = size
    files = _Source(source, max_bytes=h * w * 4 + (1 << 20))
    names = files.names()
    colours = class_colours(classes)
    if fmt == "cvat":
        maps = [n for n in names if Path(n).name == "labelmap.txt"]
        if maps:
            colours = parse_labelmap(files.read(maps[0]).decode("utf-8", "replace"), classes,
                                     files.where(maps[0]))  # fmt: skip
        wanted = [n for n in names if Path(n).parent.name == "SegmentationClass"]
        if not wanted:
            raise HvsaError(f"{shown(source)} is not a CVAT segmentation-mask export "
                            "(no SegmentationClass/)")  # fmt: skip
    elif fmt == "cityscapes":
        wanted = [n for n in names if n.endswith("_gtFine_labelIds.png")]
    else:
        top = [n for n in names if "/" not in n.replace("\\", "/")]
        inside = [n for n in names if Path(n).parent.name == "labels"]
        wanted = top if any(n.endswith(".png") for n in top) else inside
    wanted = [n for n in wanted if n.lower().endswith(".png")]
    unmatched = [n for n in wanted if frame_of(Path(n).stem, index) is None]
    if unmatched:
        raise HvsaError(f"{len(unmatched)} label file(s) of {shown(source)} name no frame of the "
                        f"video (e.g. {unmatched[0]})")  # fmt: skip
    for name in wanted:
        where = files.where(name)
        colour = fmt in ("color", "cvat")
        flags = cv2.IMREAD_COLOR if colour else cv2.IMREAD_UNCHANGED
        image = decode_image(files.read(name), where, flags, h * w)
        if image.shape[:2] != (h, w):
            raise HvsaError(f"{where} is {image.shape[1]}x{image.shape[0]}, its frame {w}x{h}")
        if colour:
            labels = rgb_to_index(image[..., ::-1], colours, where)
        elif image.ndim != 2:
            raise HvsaError(f"{where} is not a single-channel class-index image")
        else:
            labels = check_index(image, len(classes), where, void)
        yield frame_of(Path(name).stem, index), labels


def _label_studio(
    source: Path, index: dict[str, int], size: tuple[int, int], classes: ClassList
) -> dict[int, np.ndarray]:
    path = source / "tasks.json" if source.is_dir() else source
    h, w = size
    # a task can honestly need a few bytes a pixel per class; more is no label of this video
    limit = (len(index) + 1) * (h * w // 2 + 4096) * max(len(classes), 1)
    try:
        if path.stat().st_size > limit:
            raise HvsaError(f"{shown(path)}: larger than this video's labels can need")
        tasks = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HvsaError(f"{shown(path)}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list):
        raise HvsaError(f"{shown(path)}: not a Label Studio JSON export (a list of tasks)")
    names = {n: i for i, n in enumerate(classes.names)}
    return label_studio_tasks(
        tasks, shown(path), lambda task: _label_studio_task(task, index, names, size)
    )


def label_studio_tasks(
    tasks: list, where: str, read_one: Callable[[dict], tuple[int, np.ndarray | None]]
) -> dict[int, np.ndarray]:
    """``read_one`` of every task of a Label Studio export, keyed as it says (a frame or a
    sample); a task it cannot read is named by its place in ``where``."""
    out = {}
    for k, task in enumerate(tasks):
        try:
            key, labels = read_one(task)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise HvsaError(
                f"{where}: task {k} is malformed ({type(exc).__name__}: {exc})"
            ) from None
        if labels is not None:
            out[key] = labels
    return out


def _label_studio_task(
    task: dict, index: dict[str, int], names: dict[str, int], size: tuple[int, int]
) -> tuple[int, np.ndarray | None]:
    data = task["data"]
    named = data.get("frame") or Path(str(data.get("image", ""))).stem
    frame = frame_of(str(named), index)
    if frame is None:
        raise HvsaError(f"task {task.get('id', '?')}: {named!r} is no frame of the video")
    if not task.get("annotations"):
        return frame, None
    results = task["annotations"][-1].get("result", [])
    labels = brush_labels(results, size, names, f"task of frame {named}", "the frame")
    return frame, labels if labels is not None else np.full(size, VOID, np.uint8)


def brush_labels(
    results: list[dict], size: tuple[int, int], names: dict[str, int], what: str, fits: str
) -> np.ndarray | None:
    """Class ids from Label Studio brush ``results`` of ``size`` (``what`` and ``fits`` name
    the task and what the mask must cover in errors); None if there is no brush result. Each
    result's declared size is checked before its mask is decoded."""
    labels = None
    for r in results:
        if r.get("type") != "brushlabels":
            continue
        h, w = int(r["original_height"]), int(r["original_width"])
        if (h, w) != tuple(size):
            raise HvsaError(f"{what}: a {w}×{h} mask, {fits} is {size[1]}×{size[0]}")
        labels = np.full((h, w), VOID, np.uint8) if labels is None else labels
        rle = r["value"]["rle"]
        if not isinstance(rle, list) or not all(isinstance(v, int) for v in rle):
            raise HvsaError(f"{what}: the brush RLE is not a list of integers")
        for name in r["value"].get("brushlabels", []):
            if name not in names:
                raise HvsaError(f"{what}: {name!r} is not a class")
            labels[rle_to_mask(rle, h, w)] = names[name]
    return labels


# ------------------------------------------------------------------ writing
def label_paths(out: Path, fmt: str, video: str, frame: str) -> dict[str, Path]:
    """Where a frame's files go in layout ``fmt``: its ``labels`` (and ``color``) and ``image``."""
    if fmt == "cityscapes":
        gt = out / "gtFine" / CITYSCAPES_SPLIT / video
        return {
            "labels": gt / f"{frame}_gtFine_labelIds.png",
            "color": gt / f"{frame}_gtFine_color.png",
            "image": out / "leftImg8bit" / CITYSCAPES_SPLIT / video / f"{frame}_leftImg8bit.png",
        }
    if fmt == "cvat":
        return {"color": out / "SegmentationClass" / f"{frame}.png",
                "image": out / "JPEGImages" / f"{frame}.png"}  # fmt: skip
    if fmt == "color":
        return {"color": out / "labels" / f"{frame}.png", "image": out / "images" / f"{frame}.png"}
    return {"labels": out / "labels" / f"{frame}.png", "image": out / "images" / f"{frame}.png"}


class LabelWriter:
    """Writes a video's frames and labels one frame at a time in layout ``fmt``, then the
    layout's index files (:meth:`close`)."""

    def __init__(self, out: Path, fmt: str, video: str, classes: ClassList):
        if fmt not in FORMATS:
            raise HvsaError(f"unknown format {fmt!r}: {', '.join(FORMATS)}")
        self.out, self.fmt, self.video, self.classes = Path(out), fmt, video, classes
        self.palette = classes.palette()
        self.frames: list[str] = []
        self.tasks: list[dict] = []

    def write(self, frame: str, image_rgb: np.ndarray, labels: np.ndarray) -> None:
        paths = label_paths(self.out, self.fmt, self.video, frame)
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        write_image(paths["image"], cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        if "labels" in paths:
            write_image(paths["labels"], labels)
        if "color" in paths:
            colour = np.where((labels != VOID)[..., None], self.palette[labels], 0)
            write_image(paths["color"], colour.astype(np.uint8)[..., ::-1])
        if self.fmt == "label-studio":
            image = paths["image"].relative_to(self.out).as_posix()
            self.tasks.append({
                "id": len(self.tasks) + 1,
                "data": {"image": image, "frame": frame, "video": self.video},
                "annotations": [{"result": brush_results(labels, self.classes)}],
            })  # fmt: skip
        self.frames.append(frame)

    def close(self) -> None:
        if self.fmt == "cvat":
            (self.out / "labelmap.txt").write_text(cvat_labelmap(self.classes))
            sets = self.out / "ImageSets" / "Segmentation"
            sets.mkdir(parents=True, exist_ok=True)
            (sets / "default.txt").write_text("\n".join(self.frames) + "\n")
        if self.fmt == "label-studio":
            (self.out / "tasks.json").write_text(json.dumps(self.tasks) + "\n")
            (self.out / "config.xml").write_text(label_studio_config(self.classes))
