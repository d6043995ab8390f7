"""Array files (.npz) written atomically and read with a clear error.

A stage killed halfway must never leave a truncated file that a rerun would take for finished
work, so every write goes to a temporary name and is renamed into place.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from hvsa.errors import HvsaError


def save_arrays(path: Path, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` (.npz) atomically; compression for sparse label maps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
    tmp.replace(path)


class Arrays:
    """An opened .npz whose missing or damaged members are HvsaErrors naming the file (a
    truncated or edited file must be one clear line, not a zipfile traceback)."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what
        try:
            self._npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise HvsaError(f"{what} {path} is damaged ({exc})") from None
        if not isinstance(self._npz, np.lib.npyio.NpzFile):
            raise HvsaError(f"{what} {path} is not an .npz archive")

    @property
    def files(self) -> list[str]:
        return self._npz.files

    def __contains__(self, key: str) -> bool:
        return key in self._npz.files

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._npz.files:
            raise HvsaError(f"{self.what} {self.path} has no {key!r} array")
        try:
            return self._npz[key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise HvsaError(f"{self.what} {self.path}: {key!r} is damaged ({exc})") from None

    def get(self, key: str, default=None):
        if key not in self:
            return default
        return self[key]

    def close(self) -> None:
        self._npz.close()

    def __enter__(self) -> Arrays:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_arrays(path: Path, what: str) -> Arrays:
    """Open an .npz; a missing or damaged file is an HvsaError naming ``what`` it should have
    held."""
    path = Path(path)
    if not path.is_file():
        raise HvsaError(f"{what} not found: {path}")
    return Arrays(path, what)
