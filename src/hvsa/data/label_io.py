"""Composing and writing the video's labels: human labels win, the network fills the rest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hvsa.data.images import write_image
from hvsa.data.video import VOID, ClassList


def compose(pred: np.ndarray, human: np.ndarray) -> np.ndarray:
    """Network prediction overridden by every human-labelled pixel (human void keeps pred)."""
    return np.where(human != VOID, human, pred).astype(np.uint8)


def overlay(
    frame: np.ndarray, labels: np.ndarray, human: np.ndarray, classes: ClassList, alpha: float
) -> np.ndarray:
    """RGB preview: label colours blended over the frame, human-labelled areas outlined white."""
    colours = classes.palette()[labels]
    out = (frame.astype(np.float32) * (1 - alpha) + colours * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(
        (human != VOID).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    return out


def write_labels(
    out: Path,
    names: list[str],
    labels: np.ndarray,
    frames: np.ndarray,
    human: np.ndarray,
    classes: ClassList,
    alpha: float,
    only: np.ndarray | None = None,
    previous: Path | None = None,
) -> None:
    """``out/labels/<frame>.png`` class-index masks and ``out/overlays/<frame>.jpg`` previews.

    With ``only`` (N,) bool and the ``previous`` round's folder, the frames outside ``only``
    (their labels and human labels unchanged) are hard links to the previous round's files,
    not encoded again: a round that moved a few frames writes a few frames."""
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(tqdm(names, desc="write labels", leave=False)):
        files = (f"labels/{name}.png", f"overlays/{name}.jpg")
        unchanged = only is not None and previous is not None and not only[i]
        if unchanged and all(_link(previous / f, out / f) for f in files):
            continue
        write_image(out / files[0], labels[i])
        preview = overlay(frames[i], labels[i], human[i], classes, alpha)
        write_image(out / files[1], cv2.cvtColor(preview, cv2.COLOR_RGB2BGR))


def _link(source: Path, target: Path) -> bool:
    """``target`` as a hard link to ``source`` (a copy where links are not allowed); False
    when ``source`` is missing."""
    if not source.is_file():
        return False
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return True
