"""Shared fixtures: tiny generated videos (8 frames of 64×80) and a briefly pretrained network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hvsa.config import Config, load_config
from hvsa.network import save_checkpoint
from hvsa.pretrain import pretrain
from hvsa.synth import generate, write_video
from hvsa.video import load_video

REPO = Path(__file__).resolve().parents[1]
FRAMES, HEIGHT, WIDTH = 8, 64, 80
CAMVID = REPO.parent / "shared" / "datasets" / "camvid"


def tiny_config(**overrides) -> Config:
    """Repository params with the sizes of the tiny test videos and short training."""
    base = {
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


def write_fast_params(path: Path, **overrides) -> Path:
    """The repository's params.yaml with short training, for campaign tests."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    settings = {
        "finetune.steps": 5, "samples.superpixels": 40, "samples.rect_size": 16,
        "loop.budget": 6, "model.device": "cpu", "output.batch_size": 8,
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
