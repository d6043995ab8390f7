"""hvsa as a user installs it: a wheel outside the checkout, optional extras, packaged files."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from hvsa.campaign.workspace import STAGES, read_campaign, video_stages
from hvsa.cli import main
from hvsa.config import default_params, load_config
from tests.conftest import REPO


def test_the_repository_workspace_runs_the_packaged_campaign_stages():
    """The checkout is a demo workspace: its dvc.yaml makes the demo's video and network, and
    the demo video's stages are the packaged ones, filled in as hvsa writes them."""
    here = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert set(here["stages"]) == {"synth", "pretrain"}
    campaign = read_campaign(REPO)
    assert (REPO / "data" / "demo" / "dvc.yaml").read_text() == video_stages(campaign, "demo")
    stages = yaml.safe_load(video_stages(campaign, "demo"))["stages"]
    assert list(stages) == list(STAGES) and all(s["wdir"] == "../.." for s in stages.values())
    assert "${" not in video_stages(campaign, "demo")


def test_the_defaults_ship_with_the_package():
    assert default_params().is_file()
    assert (REPO / "params.yaml").resolve() == default_params().resolve(), (
        "the checkout's params.yaml is the packaged one, not a copy that could drift"
    )
    load_config(default_params())


def test_hvsa_turns_off_the_telemetry_of_what_it_starts(tmp_path):
    """Prefect, MLflow and DVC would report to their makers' hosts; nothing hvsa starts may."""
    import os

    import hvsa

    env = {k: v for k, v in os.environ.items() if k not in hvsa.QUIET}
    code = "import hvsa, os, json; print(json.dumps({k: os.environ.get(k) for k in hvsa.QUIET}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout  # fmt: skip
    assert yaml.safe_load(out) == hvsa.QUIET


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, tmp_path, capsys):
    import hvsa.errors

    monkeypatch.setattr(hvsa.errors, "installed", lambda module: module != "dvc")
    assert main(["campaign", "status", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "hvsa: error: dvc not installed: this command needs hvsa's 'campaign' extra "
        "(pip install 'hvsa[campaign]')"
    )
    monkeypatch.setattr(hvsa.errors, "installed", lambda module: module != "uvicorn")
    assert main(["annotate", "serve", "--workspace", str(tmp_path)]) == 2
    assert "'app' extra" in capsys.readouterr().err


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_runs_from_an_empty_folder(pretrained, tmp_path):
    """Build the wheel, install it alone in a fresh venv, run it far from the checkout.

    The fresh venv gets hvsa from the wheel only; its dependencies (torch alone is GBs) come
    from this environment's site-packages through a .pth file, whose own .pth files — the
    editable install of the checkout among them — Python does not read.
    """
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "empty"
    work.mkdir()
    run = subprocess.run
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(REPO)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = dist.glob("hvsa-*.whl")
    run([sys.base_prefix + "/bin/python3", "-m", "venv", str(venv)], check=True)
    run([venv / "bin/pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "hvsa_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    def hvsa(*args: str) -> str:
        done = run([venv / "bin/hvsa", *args], cwd=work, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = run([venv / "bin/python", "-c", "import hvsa; print(hvsa.__file__)"], cwd=work,
                capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv), "hvsa comes from the wheel"
    hvsa("synth", "video", "--frames", "6", "--size", "64x80", "--seed", "0")
    out = hvsa("run", "video", "--model", str(pretrained), "--out", "run", "--rounds", "1",
               "--granularity", "frame", "--budget", "1", "--set", "finetune.steps=2")  # fmt: skip
    assert "mIoU" in out
    assert len(list((work / "run" / "round_01" / "labels").glob("*.png"))) == 6
    # the packaged campaign stages and the app's page come with the wheel too
    hvsa("campaign", "init", "ws", "--model", str(pretrained), "--video", f"v={work / 'video'}")
    assert "labels:" in (work / "ws" / "data" / "v" / "dvc.yaml").read_text()
    page = run([venv / "bin/python", "-c", "from hvsa.app.server import KONVA, STATIC; "
                "print((STATIC / 'index.html').is_file(), KONVA.is_file())"], cwd=work,
               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert page.split() == ["True", "True"], "the page and its drawing library (Konva) ship"


def test_set_null_sets_a_setting_to_null():
    """``--set fusion.window=null`` means null, as in params.yaml (it was silently ignored);
    null where a setting needs a value is one line naming it."""
    from hvsa.config import parse_set_option
    from hvsa.errors import HvsaError

    assert load_config(None, parse_set_option(["fusion.window=12"])).fusion.window == 12
    assert load_config(None, parse_set_option(["fusion.window=null"])).fusion.window is None
    with pytest.raises(HvsaError, match="loop.budget"):
        load_config(None, parse_set_option(["loop.budget=null"]))
