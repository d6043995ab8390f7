"""Build hook: the annotation page's browser libraries are vendored into the package.

The page draws with Konva (a maintained canvas library: shapes with hit-testing, draggable
vertex handles, stage pan and zoom). It is installed from npm at the version pinned in
``web/package-lock.json`` and copied to ``hvsa/app/static/vendor/`` whenever the package is
built or installed (``pip install .`` or ``pip install -e .``), so the app serves it itself:
no CDN, nothing fetched by the browser from elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
VENDOR = ROOT / "src" / "hvsa" / "app" / "static" / "vendor"
FILES = {"konva/konva.min.js": "konva.min.js", "konva/LICENSE": "konva.LICENSE.txt"}


def vendor() -> None:
    """npm ci in web/ (when its node_modules lack a file), then copy the files the page loads.
    A source distribution carries the copies already (no web/ to install from): kept."""
    modules = WEB / "node_modules"
    if not (WEB / "package.json").is_file() and all((VENDOR / d).is_file() for d in FILES.values()):
        return
    if not all((modules / src).is_file() for src in FILES):
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("hvsa: building the annotation page needs npm (apt install npm)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB,
                       check=True)
    VENDOR.mkdir(parents=True, exist_ok=True)
    for src, dst in FILES.items():
        shutil.copyfile(modules / src, VENDOR / dst)


class BuildWithVendor(build_py):
    def run(self) -> None:
        vendor()
        super().run()


setup(cmdclass={"build_py": BuildWithVendor})
