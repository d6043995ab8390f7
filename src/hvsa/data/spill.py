"""Per-frame tensors of a long video kept on disk: the network's probabilities and the fused
belief, written and read a few frames at a time.

Why: they are a round's largest arrays — (frames × classes × pixels) float16, 14 bytes a
pixel with 7 classes, 2.4 GB for 1,000 frames of 480×360 each — and every step that uses them
(uncertainty, gain, fusion, estimates, selection) walks the video a few frames at a time. A
:class:`DiskTensor` keeps them as a :class:`~hvsa.data.chunks.ChunkStore` in a scratch
folder and holds only the chunks being read or written, so a round's memory no longer grows
with them. Used when a video is read lazily (``data.in_memory_mb``); a short video keeps them
in memory, which is faster.

A DiskTensor owns its folder like a tensor owns its memory: the folder is deleted when the
DiskTensor is garbage-collected (or the process ends); a folder left by a killed process is
deleted by the next run that uses the same scratch folder (:func:`clear_stale`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from hvsa.data.chunks import ChunkStore, LazyFrames
from hvsa.data.resources import process_alive

CHUNK_MB = 16  # a chunk of a few frames: one np.load at disk speed
CACHE_MB = 48  # chunks kept per tensor (steps walk frames in order: one or two suffice)


def clear_stale(scratch: Path) -> None:
    """Delete the folders of ``scratch`` left by processes that no longer run (a killed run's
    DiskTensors; a live process deletes its own)."""
    if not scratch.is_dir():
        return
    for folder in scratch.iterdir():
        try:
            pid = int(folder.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or process_alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)


class DiskTensor:
    """An (N, ...) tensor in a scratch folder, indexed like a tensor along its first axis.

    ``t[i]``, ``t[a:b]`` and ``t[index array]`` read frames and return CPU tensors;
    ``t[i] = x`` and ``t[a:b] = x`` write them. Writes go to the chunk being filled and reach
    disk when another chunk is written or read, or at :meth:`flush`; frames never written
    read as zeros.
    """

    def __init__(self, scratch: Path, shape: tuple[int, ...], dtype: torch.dtype):
        self.shape = torch.Size(int(s) for s in shape)
        self.dtype = dtype
        scratch = Path(scratch)
        scratch.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"t-{os.getpid()}-", dir=scratch))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        frame_bytes = max(1, int(np.prod(self.shape[1:], dtype=np.int64)) * np_dtype.itemsize)
        chunk = max(1, CHUNK_MB * 2**20 // frame_bytes)
        self.store = ChunkStore.create(self.folder / "data", tuple(self.shape), np_dtype, chunk)
        self._keep = max(1, CACHE_MB * 2**20 // (frame_bytes * chunk))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._dirty: set[int] = set()

    # --- tensor-like surface -------------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DiskTensor({tuple(self.shape)}, {self.dtype}, {self.folder})"

    # --- chunks -------------------------------------------------------------------------
    def _chunk(self, b: int) -> np.ndarray:
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        rows = self.store.chunk_rows(b)
        if self.store.has(b):
            block = self.store.read(b)
        else:
            block = np.zeros((len(rows), *self.shape[1:]), self.store.dtype)
        self._cache[b] = block
        self._evict()
        return block

    def _evict(self) -> None:
        while len(self._cache) > self._keep:
            b, block = next(iter(self._cache.items()))
            if b in self._dirty:
                self.store.write(b, block)
                self._dirty.discard(b)
            self._cache.pop(b)

    def flush(self) -> DiskTensor:
        """Every written frame on disk (what :meth:`clone` and another process read)."""
        for b in sorted(self._dirty):
            self.store.write(b, self._cache[b])
        self._dirty.clear()
        return self

    def _rows(self, key) -> list[int] | range:
        n = self.shape[0]
        if isinstance(key, slice):
            return range(*key.indices(n))
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return [int(t) % n for t in index.reshape(-1)]

    def __getitem__(self, key) -> torch.Tensor:
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            t = int(key)
            if not -self.shape[0] <= t < self.shape[0]:
                raise IndexError(f"frame {t} of {self.shape[0]}")
            t %= self.shape[0]
            c = self.store.chunk
            out = torch.from_numpy(self._chunk(t // c)[t % c].copy())
            return out[rest] if rest else out
        rows = self._rows(key)
        out = np.empty((len(rows), *self.shape[1:]), self.store.dtype)
        c = self.store.chunk
        i = 0
        while i < len(rows):  # runs of rows within one chunk are copied at once
            b, j = rows[i] // c, i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1 and rows[j] // c == b:
                j += 1
            start = rows[i] - b * c
            out[i:j] = self._chunk(b)[start : start + j - i]
            i = j
        t = torch.from_numpy(out)
        return t[(slice(None), *rest)] if rest else t

    def __setitem__(self, key, value) -> None:
        if isinstance(key, (int, np.integer)):
            rows: list[int] | range = [int(key) % self.shape[0]]
            value = torch.as_tensor(value)[None]
        else:
            rows = self._rows(key)
        values = torch.as_tensor(value).detach().cpu().numpy()
        c = self.store.chunk
        for i, t in enumerate(rows):
            b = t // c
            self._chunk(b)[t - b * c] = values[i]
            self._dirty.add(b)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:].numpy()
        return out if dtype is None else out.astype(dtype)

    def frames(self) -> LazyFrames:
        """The same frames as numpy arrays (:class:`LazyFrames`), for code that indexes maps
        frame by frame; it keeps this DiskTensor (and so its folder) alive, and reads through
        a cache of its own (this one's is emptied)."""
        self.flush()
        self._cache.clear()
        return LazyFrames(
            self.shape, self.store.dtype, self._read_chunk, self.store.chunk, CACHE_MB
        )

    def _read_chunk(self, b: int) -> np.ndarray:
        return self.store.read(b) if self.store.has(b) else self._chunk(b)

    def clone(self) -> DiskTensor:
        """A copy in a new folder: written chunks are hard-linked (a chunk is replaced, never
        changed in place, when either copy writes it), so a copy costs no disk until written."""
        self.flush()
        other = DiskTensor(self.folder.parent, tuple(self.shape), self.dtype)
        for b in range(self.store.chunks):
            if self.store.has(b):
                try:
                    os.link(self.store.path(b), other.store.path(b))
                except OSError:
                    shutil.copyfile(self.store.path(b), other.store.path(b))
        return other


def map_frames(source, fn, tail: tuple[int, ...], dtype: np.dtype, chunk: int = 16):
    """``fn(source[a:b])`` of every ``chunk`` frames, stacked into an (N, *tail) array of
    ``dtype``: in memory, or beside ``source`` on disk (read back as :class:`LazyFrames`)
    when ``source`` is a :class:`DiskTensor` — a per-pixel map of a long video (uncertainty,
    gain) then never sits in memory whole."""
    n = len(source)
    if isinstance(source, DiskTensor):
        torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
        disk = DiskTensor(source.folder.parent, (n, *tail), torch_dtype)
        for start in range(0, n, chunk):
            disk[start : start + chunk] = torch.from_numpy(
                np.asarray(fn(source[start : start + chunk]))
            )
        return disk.frames()
    out = np.empty((n, *tail), dtype)
    for start in range(0, n, chunk):
        out[start : start + chunk] = fn(source[start : start + chunk])
    return out


def empty(scratch: Path | None, shape: tuple[int, ...], dtype: torch.dtype):
    """An empty (N, ...) tensor: a :class:`DiskTensor` in ``scratch``, in memory without one."""
    return torch.empty(shape, dtype=dtype) if scratch is None else DiskTensor(scratch, shape, dtype)


def like(reference, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | DiskTensor:
    """An empty (N, ...) tensor where ``reference`` keeps its frames: on disk beside a
    DiskTensor, else in memory."""
    return empty(reference.folder.parent if isinstance(reference, DiskTensor) else None,
                 shape, dtype)  # fmt: skip
