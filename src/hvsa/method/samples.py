"""Candidate samples: whole frames, rectangles, or superpixels.

A sample is (frame, region). All regions of one frame are stored as a region-id map, so a
whole video's samples are one (N,H,W) int32 array plus a table; per-sample statistics are then
``bincount`` over that map instead of a Python loop over masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import find_objects
from skimage.segmentation import slic
from tqdm import tqdm

from hvsa.config import SamplesConfig
from hvsa.data.arrays import load_arrays, save_arrays
from hvsa.data.chunks import frames_digest
from hvsa.errors import HvsaError

AUTO_IS_NO_SAMPLE_SET = (
    "granularity auto chooses among several sample sets each round (auto.granularities): build "
    "each of them, not one set called auto"
)


@dataclass
class SampleSet:
    """``segments[f]`` holds per-frame region ids 0..k_f-1; ``table`` one row per sample.

    Table columns: sample_id (global, row index), frame, segment, kind, x0, y0, x1, y1
    (bounding box, exclusive ends), n_pixels, cx, cy (centroid).
    """

    segments: np.ndarray
    table: pd.DataFrame
    granularity: str

    def region(self, sample_id: int) -> tuple[int, tuple[slice, slice], np.ndarray]:
        """(frame, bbox slices, bool mask inside the bbox) of one sample."""
        row = self.table.iloc[sample_id]
        frame = int(row.frame)
        box = (slice(int(row.y0), int(row.y1)), slice(int(row.x0), int(row.x1)))
        return frame, box, self.segments[frame][box] == int(row.segment)

    def global_ids(self) -> np.ndarray:
        """(N,H,W) int64 map of global sample ids."""
        offsets = self.table.groupby("frame")["sample_id"].min().to_numpy()
        return self.segments.astype(np.int64) + offsets[:, None, None]


def parse_granularity(name: str) -> tuple[str, int | None]:
    """``frame`` / ``superpixel`` / ``rectN`` → (kind, rect size or None)."""
    if name in ("frame", "superpixel"):
        return name, None
    if name.startswith("rect") and name[4:].isdigit() and int(name[4:]) >= 2:
        return "rect", int(name[4:])
    raise HvsaError(f"granularity {name!r}: use frame, superpixel or rectN (N ≥ 2 pixels)")


def rect_segments(size: tuple[int, int], rect: int) -> np.ndarray:
    """Grid of ``rect``-sized cells (the last row/column may be smaller)."""
    h, w = size
    cols = -(-w // rect)
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy // rect) * cols + xx // rect).astype(np.int32)


def superpixel_segments(frame: np.ndarray, n: int, compactness: float) -> np.ndarray:
    """SLIC superpixels relabelled to consecutive ids 0..k-1."""
    seg = slic(frame, n_segments=n, compactness=compactness, start_label=0, channel_axis=-1)
    _, consecutive = np.unique(seg, return_inverse=True)
    return consecutive.reshape(seg.shape).astype(np.int32)


def _table(segments: np.ndarray, kind: str) -> pd.DataFrame:
    rows = []
    next_id = 0
    for f, seg in enumerate(segments):
        k = int(seg.max()) + 1
        h, w = seg.shape
        flat = seg.ravel()
        count = np.bincount(flat, minlength=k)
        yy, xx = np.divmod(np.arange(h * w), w)
        cx = np.bincount(flat, xx, minlength=k) / np.maximum(count, 1)
        cy = np.bincount(flat, yy, minlength=k) / np.maximum(count, 1)
        boxes = find_objects(seg + 1, max_label=k)
        rows.append(
            pd.DataFrame(
                {
                    "sample_id": np.arange(next_id, next_id + k),
                    "frame": f,
                    "segment": np.arange(k),
                    "kind": kind,
                    "x0": [b[1].start for b in boxes],
                    "y0": [b[0].start for b in boxes],
                    "x1": [b[1].stop for b in boxes],
                    "y1": [b[0].stop for b in boxes],
                    "n_pixels": count,
                    "cx": cx,
                    "cy": cy,
                }
            )
        )
        next_id += k
    return pd.concat(rows, ignore_index=True)


def build_samples(
    frames: np.ndarray, cfg: SamplesConfig, granularity: str | None = None
) -> SampleSet:
    """All candidate samples of a video at one granularity."""
    kind = granularity or cfg.granularity
    if kind == "auto":
        raise HvsaError(AUTO_IS_NO_SAMPLE_SET)
    n, h, w = frames.shape[:3]
    # whole frames and rectangles: one map shared by every frame, a read-only view that
    # takes no memory however long the video (4 bytes a pixel of every frame otherwise)
    if kind == "frame":
        segments = np.broadcast_to(np.zeros((h, w), np.int32), (n, h, w))
    elif kind == "rect":
        segments = np.broadcast_to(rect_segments((h, w), cfg.rect_size), (n, h, w))
    else:
        segments = np.stack(
            [
                superpixel_segments(f, cfg.superpixels, cfg.compactness)
                for f in tqdm(frames, desc="superpixels", leave=False)
            ]
        )
    return SampleSet(segments, _table(segments, kind), kind)


def save_samples(path: Path, samples: SampleSet) -> None:
    save_arrays(
        path, compressed=True, segments=samples.segments, granularity=np.str_(samples.granularity)
    )


def load_samples(path: Path) -> SampleSet:
    """Samples saved by :func:`save_samples` (the table is rebuilt from the region maps)."""
    data = load_arrays(path, "samples")
    kind = str(data["granularity"])
    return SampleSet(data["segments"], _table(data["segments"], kind), kind)


def load_or_build_samples(
    frames: np.ndarray, cfg: SamplesConfig, cache_dir: Path, granularity: str | None = None
) -> SampleSet:
    """Samples from the cache (superpixels take seconds per video), else built and cached;
    whole frames and rectangles are built, never cached."""
    kind = granularity or cfg.granularity
    if kind == "auto":
        return build_samples(frames, cfg, kind)  # refuses with the reason
    if kind in ("frame", "rect"):
        return build_samples(frames, cfg, kind)  # one shared map: nothing worth caching
    digest = frames_digest(frames)  # a frame at a time: the key of the whole video's bytes
    knobs = {
        "frame": "",
        "rect": str(cfg.rect_size),
        "superpixel": f"{cfg.superpixels}-{cfg.compactness}",
    }
    digest.update(f"{kind}-{knobs[kind]}".encode())
    path = cache_dir / f"samples-{kind}-{digest.hexdigest()[:16]}.npz"
    if path.is_file():
        return load_samples(path)
    samples = build_samples(frames, cfg, kind)
    save_samples(path, samples)
    return samples
