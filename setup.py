"""Build hook: the annotation page's browser libraries are vendored into the package.

The page draws with Konva (a maintained canvas library: shapes with hit-testing, draggable
vertex handles, stage pan and zoom). It is installed from npm at the version pinned in
``web/package-lock.json`` and copied to ``hvsa/app/static/vendor/`` whenever the package is
built or installed (``pip install .`` or ``pip install -e .``), so the app serves it itself:
no CDN, nothing fetched by the browser from elsewhere.
"""

from __future__ import annotations

import json
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
    """npm ci in web/ unless its node_modules hold the locked version, then copy the files the
    page loads. Without npm, copies already made (a source distribution carries them) are kept."""
    modules = WEB / "node_modules"
    locked = json.loads((WEB / "package-lock.json").read_text())["packages"]
    wanted = locked["node_modules/konva"]["version"]
    found = modules / "konva" / "package.json"
    if not found.is_file() or json.loads(found.read_text())["version"] != wanted:
        npm = shutil.which("npm")
        if npm is None:
            if all((VENDOR / dst).is_file() for dst in FILES.values()):
                return
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
