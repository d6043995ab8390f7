"""User-facing errors, and the crash points the crash tests kill the process at.

Anything a user can cause (bad paths, malformed labels, mismatched checkpoints, a missing
optional install) is raised as :class:`HvsaError`; the CLI prints its message on one line and
exits non-zero, so a labelling campaign never dies with a traceback that hides what was wrong.
"""

from __future__ import annotations

import importlib.util
import os
import signal


class HvsaError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""


# the optional dependency groups of pyproject.toml and the modules each one brings
EXTRAS = {
    "campaign": ("prefect", "dvc", "mlflow"),
    "app": ("prefect", "dvc", "mlflow", "fastapi", "uvicorn"),
    "dask": ("prefect", "dvc", "mlflow", "dask", "distributed", "prefect_dask"),
}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def require_extra(extra: str) -> None:
    """Refuse, in one line naming the extra, a command whose optional dependencies are missing.

    Why: the library and ``hvsa run`` install without the servers (Prefect, DVC, MLflow,
    FastAPI); a campaign command without them would otherwise die on an ImportError deep in a
    stage or a flow.
    """
    missing = [m for m in EXTRAS[extra] if not installed(m)]
    if missing:
        raise HvsaError(
            f"{', '.join(missing)} not installed: this command needs hvsa's {extra!r} extra "
            f"(pip install 'hvsa[{extra}]')"
        )


CRASH_VARIABLE = "HVSA_CRASH_AT"


def crash_point(name: str, round_no: int) -> None:
    """Fault injection for the crash tests: with ``HVSA_CRASH_AT=name:round`` in the
    environment, the process kills itself here with SIGKILL, as a power cut or the OOM killer
    would, so a test can show that a rerun resumes with nothing lost or recorded twice."""
    if os.environ.get(CRASH_VARIABLE) == f"{name}:{round_no}":
        os.kill(os.getpid(), signal.SIGKILL)
