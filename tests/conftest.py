"""Shared fixtures: tiny generated videos (8 frames of 64×80) and a briefly pretrained network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hvsa.config import Config, load_config
from hvsa.data.synth import generate, write_video
from hvsa.data.video import load_video
from hvsa.method.network import save_checkpoint
from hvsa.method.pretrain import pretrain

REPO = Path(__file__).resolve().parents[1]
FRAMES, HEIGHT, WIDTH = 8, 64, 80
CAMVID = REPO.parent / "shared" / "datasets" / "camvid"


def tiny_config(**overrides) -> Config:
    """Repository params with the sizes of the tiny test videos and short training."""
    base = {
        # the settings the tests were written for (params.yaml's defaults are CamVid's best)
        "samples.granularity": "superpixel",
        "selection.strategy": "paper",
        "pretrain.steps": 60,
        "pretrain.batch_size": 8,
        "finetune.steps": 30,
        "samples.superpixels": 40,
        "samples.rect_size": 16,
        "loop.budget": 8,
        "loop.rounds": 2,
        "model.device": "cpu",
    }
    base.update(overrides)
    return load_config(REPO / "params.yaml", base)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> dict[int, Path]:
    """Seed → folder of an 8-frame 64×80 generated video with labels."""
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for seed in (0, 1, 2):
        frames, labels, classes = generate(FRAMES, HEIGHT, WIDTH, seed)
        out[seed] = write_video(root / f"seed{seed}", frames, labels, classes)
    return out


@pytest.fixture(scope="session")
def pretrained(tiny_videos, tmp_path_factory) -> Path:
    """A checkpoint pretrained for a few steps on seeds 1 and 2 (never on seed 0)."""
    cfg = tiny_config()
    videos = [load_video(tiny_videos[s]) for s in (1, 2)]
    model, classes, _ = pretrain(videos, cfg)
    path = tmp_path_factory.mktemp("model") / "pretrained.pt"
    save_checkpoint(path, model, classes)
    return path


@pytest.fixture(scope="session", autouse=True)
def _tool_environment(tmp_path_factory):
    """DVC and MLflow write only below the test's temporary folders; no analytics."""
    import os

    site = tmp_path_factory.mktemp("dvc-site")
    os.environ["DVC_SITE_CACHE_DIR"] = str(site)
    os.environ["DVC_NO_ANALYTICS"] = "1"
    # importing dvc binds its log handler to the sys.stderr of that moment: bind it to the
    # whole test run's stderr, not to a test's capsys stream that is closed once that test
    # ends (a later test's in-process DVC call would then fail with "I/O operation on closed
    # file")
    import dvc  # noqa: F401


def write_fast_params(path: Path, **overrides) -> Path:
    """The repository's params.yaml with short training, for campaign tests."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    settings = {
        "finetune.steps": 5, "samples.superpixels": 40, "samples.rect_size": 16,
        "loop.budget": 6, "model.device": "cpu", "output.batch_size": 8,
        "samples.granularity": "superpixel", "selection.strategy": "paper",
    }  # fmt: skip
    settings.update(overrides)
    for dotted, value in settings.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def prefect_api():
    """One real, temporary Prefect API (SQLite) for every flow test; yields its URL."""
    import os

    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield get_current_settings().api.url


# helpers shared by several test files ------------------------------------------------------


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now (for the servers tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_args(video, model, out, granularity: str, budget: int, rounds: int) -> list[str]:
    """``hvsa run`` arguments for the tiny videos (40 superpixels, 16 px rectangles)."""
    return [
        "run", str(video), "--model", str(model), "--out", str(out),
        "--granularity", granularity, "--budget", str(budget), "--rounds", str(rounds),
        "--set", "samples.superpixels=40", "--set", "samples.rect_size=16",
    ]  # fmt: skip


def shifting_video(frames=5, shift=2):
    """A textured two-class picture sliding ``shift`` px left per frame: frames and labels."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (80, 140)).astype(np.float32), (0, 0), 2)
    big = ((big - big.min()) / (big.max() - big.min()) * 255).astype(np.uint8)
    labels_big = (big > 128).astype(np.uint8)
    imgs = [
        np.repeat(big[8:72, 20 + shift * t : 100 + shift * t, None], 3, -1) for t in range(frames)
    ]
    labs = [labels_big[8:72, 20 + shift * t : 100 + shift * t] for t in range(frames)]
    return np.stack(imgs), np.stack(labs)


def start_flow(root, api_url: str, rounds: int) -> subprocess.Popen:
    """The campaign flow of workspace ``root`` in its own process, on the test's Prefect API."""
    env = dict(os.environ, PREFECT_API_URL=api_url)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    return subprocess.Popen(
        [sys.executable, str(REPO / "flows" / "campaign.py"), str(root), "--rounds", str(rounds)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def selected_samples(ws, key: str, round_no: int):
    """The sample set a round of campaign video ``key`` selected from, and its selection."""
    import pandas as pd

    from hvsa.method.samples import load_samples

    selected = pd.read_parquet(ws.round_dir(key, round_no) / "selected.parquet")
    return load_samples(ws.sample_set(key, selected["granularity"].iloc[0])), selected
