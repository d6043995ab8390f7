import numpy as np
import pytest

from hvsa.config import load_config
from hvsa.metrics import miou
from hvsa.motion import compute_flow
from hvsa.propagate import every_kth, propagate, trace
from hvsa.synth import CLASSES, generate
from hvsa.video import VOID
from tests.conftest import REPO


def _shifting_video(frames=5, shift=2):
    rng = np.random.default_rng(0)
    import cv2

    big = cv2.GaussianBlur(rng.uniform(0, 255, (80, 140)).astype(np.float32), (0, 0), 2)
    big = ((big - big.min()) / (big.max() - big.min()) * 255).astype(np.uint8)
    labels_big = (big > 128).astype(np.uint8)
    imgs = [
        np.repeat(big[8:72, 20 + shift * t : 100 + shift * t, None], 3, -1) for t in range(frames)
    ]
    labs = [labels_big[8:72, 20 + shift * t : 100 + shift * t] for t in range(frames)]
    return np.stack(imgs), np.stack(labs)


def test_trace_follows_a_translation():
    frames, _ = _shifting_video()
    flow = compute_flow(frames, load_config(REPO / "params.yaml").flow)
    x, y, err = trace(flow, 0, 3)  # content moves 2 px left per frame
    inner = (slice(10, -10), slice(10, -20))
    gx = np.arange(80)[None, :].repeat(64, 0)
    assert np.median(np.abs(x[inner] - (gx[inner] - 6))) < 0.5
    assert np.isinf(err[:, :3]).all()  # these pixels leave the frame on the left


def test_propagation_between_keyframes_recovers_most_labels():
    frames, labels = _shifting_video()
    flow = compute_flow(frames, load_config(REPO / "params.yaml").flow)
    given = np.full_like(labels, VOID)
    keys = every_kth(len(frames), 4)
    assert keys == [0, 4]
    given[keys] = labels[keys]
    out = propagate(given, keys, flow)
    assert (out[keys] == labels[keys]).all()
    agree = (out[1:4] == labels[1:4])[:, 5:-5, 5:-5].mean()
    assert agree > 0.95


def test_propagation_on_a_generated_video_beats_copying_the_keyframe():
    frames, labels, _ = generate(8, 64, 80, seed=2)
    flow = compute_flow(frames, load_config(REPO / "params.yaml").flow)
    keys = every_kth(8, 4)
    given = np.full_like(labels, VOID)
    given[keys] = labels[keys]
    propagated, _ = miou(labels, propagate(given, keys, flow), len(CLASSES))
    nearest = np.stack([labels[min(keys, key=lambda k: abs(k - t))] for t in range(8)])
    copied, _ = miou(labels, nearest, len(CLASSES))
    assert propagated > copied


def test_propagation_needs_a_keyframe():
    frames, labels = _shifting_video()
    flow = compute_flow(frames, load_config(REPO / "params.yaml").flow)
    with pytest.raises(ValueError):
        propagate(labels, [], flow)
