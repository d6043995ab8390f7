"""Image files read safely and written atomically.

Why not ``cv2.imread``/``cv2.imwrite`` directly: OpenCV's readers take a ``str`` path and
crash the process (a segmentation fault, no message) on a name that is not valid UTF-8; a
truncated JPEG decodes "successfully" with a grey lower half and only a libjpeg warning on
stderr; a small PNG can declare 60000×60000 pixels and allocate gigabytes before anything
checks it; and a write interrupted by a kill leaves a truncated PNG that a rerun would take for
a finished label. Here the bytes are read by Python (any file name the OS accepts), checked
for completeness and for a declared size before decoding, and writes go to a temporary name
that is renamed into place.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from hvsa.errors import HvsaError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8"
# a frame larger than this is refused before decoding (OpenCV's own cap is 2^30 pixels)
MAX_PIXELS = 100_000_000


def shown(path: Path) -> str:
    """A path as it may be printed: bytes that are not UTF-8 as ``\\x..`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) a PNG or JPEG header declares, without decoding; None if unknown."""
    if data.startswith(PNG_MAGIC) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data.startswith(JPEG_MAGIC):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return height, width
            i += 2 + length
    return None


def check_declared(path: Path, size: tuple[int, int] | None, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels."""
    if size is not None and size[0] * size[1] > max_pixels:
        raise HvsaError(
            f"image {shown(path)} declares {size[1]}x{size[0]} pixels, more than "
            f"{max_pixels:,} allowed"
        )


def complete_image(data: bytes) -> bool:
    """False for a PNG without its IEND chunk or a JPEG without its end-of-image marker."""
    if data.startswith(PNG_MAGIC):
        return b"IEND" in data[-32:]
    if data.startswith(JPEG_MAGIC):
        return data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    return True


def read_image(path: Path, flags: int = cv2.IMREAD_UNCHANGED, max_pixels: int = MAX_PIXELS):
    """The decoded image (OpenCV's channel order), or an HvsaError naming the file and why."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise HvsaError(f"cannot read image {shown(path)}: {exc.strerror}") from None
    return decode_image(data, path, flags, max_pixels)


def decode_image(
    data: bytes, path: Path | str, flags: int = cv2.IMREAD_UNCHANGED, max_pixels: int = MAX_PIXELS
):
    """An image's bytes decoded (OpenCV's channel order) with the checks of :func:`read_image`;
    ``path`` names it in errors (a file, or an entry of a zip)."""
    if not data:
        raise HvsaError(f"image {shown(path)} is empty")
    check_declared(path, declared_size(data), max_pixels)
    if not complete_image(data):
        raise HvsaError(f"image {shown(path)} is truncated (its file ends early)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise HvsaError(f"cannot read image {shown(path)}: not a PNG or JPEG OpenCV can decode")
    return image


def write_image(path: Path, image: np.ndarray) -> None:
    """Write ``image`` (OpenCV's channel order) by its suffix, atomically."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise HvsaError(f"cannot encode image {shown(path)}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encoded.tobytes())
    tmp.replace(path)
