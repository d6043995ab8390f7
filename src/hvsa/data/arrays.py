"""Array files (.npz) written atomically and read with a clear error.

A stage killed halfway must never leave a truncated file that a rerun would take for finished
work, so every write goes to a temporary name and is renamed into place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hvsa.errors import HvsaError


def save_arrays(path: Path, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` (.npz) atomically; compression for sparse label maps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
    tmp.replace(path)


def load_arrays(path: Path, what: str) -> np.lib.npyio.NpzFile:
    """Open an .npz; a missing file is an HvsaError naming ``what`` it should have held."""
    if not path.is_file():
        raise HvsaError(f"{what} not found: {path}")
    return np.load(path)
