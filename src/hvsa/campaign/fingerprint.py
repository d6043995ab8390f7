"""Fingerprints of the code each DVC stage runs, so that a changed method reruns its stages.

DVC reruns a stage when its dependencies change; the hvsa code a stage runs is one of them, but
it lives in the installed package, outside the workspace, and next to ``__pycache__`` files that
change without the code changing. So hvsa hashes, per stage, the source of every hvsa module
the stage's entry point imports, directly or through other hvsa modules (found by reading the
imports, lazy ones included), and writes it to ``.hvsa/code/<stage>.sha256`` in the workspace,
which the stage lists among its deps. A change to the flow computation reruns ``flow`` and
what follows it; a change to the round engine reruns the round stages, not ``flow``; a change to
the app or the benchmark reruns nothing.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

import hvsa
from hvsa.campaign.workspace import STAGES

PACKAGE = Path(hvsa.__file__).parent
FOLDER = ".hvsa/code"


def _module_file(name: str) -> Path | None:
    """The source file of hvsa module ``name`` (a package's ``__init__.py``), if it exists."""
    parts = name.split(".")[1:]
    if not parts:
        return PACKAGE / "__init__.py"
    rel = Path(*parts)
    for candidate in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _imports(path: Path) -> frozenset[str]:
    """hvsa modules a source file imports (``from hvsa.x import y`` may name module x.y)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hvsa"):
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("hvsa")}
    return frozenset(names)


def closure(module: str) -> list[Path]:
    """Every hvsa source file ``module`` runs: itself, the packages above it and everything
    they import, transitively."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            path = _module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo += sorted(_imports(path))
    return sorted(seen)


def stage_fingerprint(stage: str) -> str:
    digest = hashlib.sha256()
    for path in closure(f"hvsa.campaign.stages.{stage}"):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def write_fingerprints(root: Path) -> None:
    """``.hvsa/code/<stage>.sha256`` for every stage, rewritten only where the code changed."""
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        path = folder / f"{stage}.sha256"
        text = stage_fingerprint(stage) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


if __name__ == "__main__":  # python -m hvsa.campaign.fingerprint [WORKSPACE]
    import sys

    write_fingerprints(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
