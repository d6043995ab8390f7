"""Arrays of frames kept on disk and read in windows: what lets a long video fit in memory.

A video's per-frame arrays (its frames, its optical flow, the network's probabilities) grow
with frames × pixels: 1,000 frames of 1280×720 are 2.8 GB of RGB and 15 GB of float32 flow.
Every step of a round needs only a window of them at a time (fusion: the frames a chain walks;
fine-tuning: a batch of pairs; prediction: a batch), so they live on disk and are read a block
at a time, with the last few blocks kept (:class:`LazyFrames`).

Storage (:class:`ChunkStore`): a folder of ``.npy`` chunks of ``chunk`` frames each, plus
``meta.json``. Why plain ``.npy`` rather than zarr or HDF5: a chunk is one ``np.load`` at disk
speed with no codec and no dependency; each chunk is written whole under a temporary name and
renamed into place, so a crash leaves only whole chunks and a rerun computes the missing ones
(the flow cache resumes this way); and a chunk file is an ordinary array anyone can open.
Flow and probabilities compress poorly (noise in the low bits), so zarr's codecs would buy
little disk for their CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from hvsa.errors import HvsaError

META = "meta.json"


class LazyFrames:
    """An (N, ...) array read a block of frames at a time, numpy-like for what rounds use.

    ``load(b)`` returns block ``b``: frames ``b * block`` to ``(b + 1) * block`` (fewer at the
    end). ``cache_mb`` bounds the blocks kept (at least one). Indexing with an int gives one
    frame, with a slice, a list, an int array or a bool mask a stacked array; ``np.asarray``
    reads every frame (what code not yet windowed falls back to).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype,
        load: Callable[[int], np.ndarray],
        block: int = 1,
        cache_mb: float = 256,
        convert: np.dtype | None = None,
    ):
        self.shape = tuple(int(s) for s in shape)
        self._stored = np.dtype(dtype)
        self.dtype = np.dtype(convert) if convert is not None else self._stored
        self._load, self.block = load, int(block)
        item = int(np.prod(self.shape[1:], dtype=np.int64)) * self._stored.itemsize
        self._keep = max(1, int(cache_mb * 2**20 // max(1, item * self.block)))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _block(self, b: int) -> np.ndarray:
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        data = self._load(b)
        self._cache[b] = data
        while len(self._cache) > self._keep:
            self._cache.popitem(last=False)
        return data

    def frame(self, t: int) -> np.ndarray:
        n = self.shape[0]
        if not -n <= t < n:
            raise IndexError(f"frame {t} of {n}")
        t %= n
        out = self._block(t // self.block)[t % self.block]
        return out.astype(self.dtype) if self.dtype != self._stored else out

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            out = self.frame(int(key))
            return out[rest] if rest else out
        if isinstance(key, slice):
            index = range(*key.indices(self.shape[0]))
        else:
            index = np.asarray(key)
            if index.dtype == bool:
                index = np.flatnonzero(index)
            index = index.reshape(-1).tolist()
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        for i, t in enumerate(index):
            out[i] = self.frame(int(t))
        return out[(slice(None), *rest)] if rest else out

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self.shape[0]):
            yield self.frame(t)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class ChunkStore:
    """An (N, ...) array on disk as ``.npy`` chunks of ``chunk`` frames (module docstring)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        try:
            meta = json.loads((self.folder / META).read_text())
            self.shape = tuple(int(s) for s in meta["shape"])
            self.dtype = np.dtype(meta["dtype"])
            self.chunk = int(meta["chunk"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HvsaError(f"chunked array {self.folder} is damaged ({exc})") from None

    @classmethod
    def create(
        cls, folder: Path, shape: tuple[int, ...], dtype: np.dtype, chunk: int
    ) -> ChunkStore:
        """A new store, or the one already in ``folder`` if it has the same layout (its whole
        chunks are kept: what lets an interrupted computation resume)."""
        folder = Path(folder)
        meta = {"shape": [int(s) for s in shape], "dtype": np.dtype(dtype).str, "chunk": chunk}
        if (folder / META).is_file():
            try:
                if json.loads((folder / META).read_text()) == meta:
                    return cls(folder)
            except ValueError:
                pass
            for old in folder.glob("*.npy"):
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        _write_meta(folder, meta)
        return cls(folder)

    @property
    def chunks(self) -> int:
        return -(-self.shape[0] // self.chunk)

    def path(self, b: int) -> Path:
        return self.folder / f"{b:06d}.npy"

    def has(self, b: int) -> bool:
        return self.path(b).is_file()

    def missing(self) -> list[int]:
        return [b for b in range(self.chunks) if not self.has(b)]

    def complete(self) -> bool:
        return not self.missing()

    def chunk_rows(self, b: int) -> range:
        return range(b * self.chunk, min((b + 1) * self.chunk, self.shape[0]))

    def write(self, b: int, block: np.ndarray) -> None:
        """Chunk ``b`` whole, atomically: a temporary file renamed into place."""
        want = (len(self.chunk_rows(b)), *self.shape[1:])
        if block.shape != want:
            raise ValueError(f"chunk {b} of {self.folder} must be {want}, not {block.shape}")
        tmp = self.folder / f".{b:06d}.{os.getpid()}.tmp.npy"
        np.save(tmp, np.ascontiguousarray(block, self.dtype))
        tmp.replace(self.path(b))

    def read(self, b: int) -> np.ndarray:
        try:
            block = np.load(self.path(b), allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise HvsaError(f"chunk {self.path(b)} is damaged or missing ({exc})") from None
        if block.shape != (len(self.chunk_rows(b)), *self.shape[1:]):
            raise HvsaError(f"chunk {self.path(b)} has shape {block.shape}, not the store's")
        return block

    def lazy(self, cache_mb: float = 256, convert: np.dtype | None = None) -> LazyFrames:
        """The store as a :class:`LazyFrames` (``convert``: the dtype frames are read as)."""
        if not self.complete():
            raise HvsaError(f"chunked array {self.folder} is incomplete: {self.missing()[:3]}…")
        return LazyFrames(self.shape, self.dtype, self.read, self.chunk, cache_mb, convert)


class Appender:
    """Builds a :class:`ChunkStore` from frames that arrive one at a time, their number unknown
    beforehand (a decoded video stream): chunks are written as they fill, ``meta.json`` last,
    so a store without it is unfinished."""

    def __init__(self, folder: Path, item_shape: tuple[int, ...], dtype: np.dtype, chunk: int):
        self.folder, self.item_shape = Path(folder), tuple(item_shape)
        self.dtype, self.chunk = np.dtype(dtype), int(chunk)
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        self._buffer: list[np.ndarray] = []
        self.count = 0

    def append(self, item: np.ndarray) -> None:
        if item.shape != self.item_shape:
            raise HvsaError(f"item {self.count} is {item.shape}, not {self.item_shape}")
        self._buffer.append(item)
        self.count += 1
        if len(self._buffer) == self.chunk:
            self._flush()

    def _flush(self) -> None:
        b = (self.count - 1) // self.chunk
        tmp = self.folder / f".{b:06d}.tmp.npy"
        np.save(tmp, np.stack(self._buffer).astype(self.dtype, copy=False))
        tmp.replace(self.folder / f"{b:06d}.npy")
        self._buffer = []

    def close(self) -> ChunkStore:
        if self._buffer:
            self._flush()
        meta = {"shape": [self.count, *self.item_shape], "dtype": self.dtype.str,
                "chunk": self.chunk}  # fmt: skip
        _write_meta(self.folder, meta)
        return ChunkStore(self.folder)


def _write_meta(folder: Path, meta: dict) -> None:
    """``meta.json`` written atomically, under a temporary name of this process's: two runs
    sharing a cache never rename each other's file."""
    tmp = folder / f".{META}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta) + "\n")
    tmp.replace(folder / META)


def frames_digest(frames) -> hashlib._Hash:
    """SHA-1 of a video's frames, hashed a frame at a time (frames read from disk never all
    sit in memory); the same as the whole array's bytes in one piece."""
    digest = hashlib.sha1()
    for frame in frames:
        digest.update(np.ascontiguousarray(frame).tobytes())
    return digest
