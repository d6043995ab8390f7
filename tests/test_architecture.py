"""The package's layers: every import goes down, never up or sideways.

Each subpackage's docstring ends with ``May import: hvsa.x, hvsa.y``; this test holds the code
to it, so the docstrings that tell a newcomer the architecture are also its rules. Imports
inside functions count too: a lazy import up a layer is still a dependency up a layer.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import hvsa

PACKAGE = Path(hvsa.__file__).parent
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
TOP_MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))
# the modules at the top: the command line above everything, the shared basics below it
TOP_RULES = {
    "__init__": set(),
    "errors": set(),
    "config": {"errors"},
    "cli": {"errors", "config", *SUBPACKAGES},
}


def _allowed(subpackage: str) -> set[str]:
    """The ``May import:`` line of a subpackage's docstring, as top-level names."""
    doc = ast.get_docstring(ast.parse((PACKAGE / subpackage / "__init__.py").read_text()))
    match = re.search(r"May import:\s*(.*)", doc or "", re.S)
    assert match, f"hvsa.{subpackage}'s docstring says nothing of what it may import"
    return set(re.findall(r"hvsa\.(\w+)", match.group(1)))


def _imports(path: Path) -> set[str]:
    """Top-level hvsa names a module imports (``hvsa.method.fusion`` → ``method``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("hvsa.")}
    return found


def _owner(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_the_top_holds_few_modules_and_the_layers_are_subpackages():
    assert len(TOP_MODULES) <= 5, TOP_MODULES
    assert len(SUBPACKAGES) >= 5, SUBPACKAGES
    assert set(TOP_MODULES) <= set(TOP_RULES), "a new top-level module needs a rule here"


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_goes_up_a_layer(path):
    owner = _owner(path)
    allowed = TOP_RULES[owner] if owner in TOP_RULES else _allowed(owner)
    wrong = _imports(path) - allowed - {owner}
    assert not wrong, f"{path.relative_to(PACKAGE)} imports hvsa.{', hvsa.'.join(sorted(wrong))}"


def test_the_rules_form_layers_without_cycles():
    rules = {p: _allowed(p) for p in SUBPACKAGES}
    order: list[str] = []
    pending = dict(rules)
    while pending:
        ready = [p for p, deps in pending.items() if deps - {"errors", "config"} <= set(order)]
        assert ready, f"the May import rules of {sorted(pending)} form a cycle"
        order += sorted(ready)
        for p in ready:
            del pending[p]


def test_the_layer_test_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from hvsa.app.server import create_app\n")
    assert _imports(bad) == {"app"}
