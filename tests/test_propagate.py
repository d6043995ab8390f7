import numpy as np
import pytest

from hvsa.config import load_config
from hvsa.data.synth import CLASSES, generate
from hvsa.data.video import VOID
from hvsa.method.metrics import miou
from hvsa.method.motion import compute_flow
from hvsa.method.propagate import every_kth, propagate, propagate_human, trace
from tests.conftest import REPO, shifting_video


def test_trace_follows_a_translation():
    frames, _ = shifting_video()
    flow = compute_flow(frames, load_config(REPO / "params.yaml").flow)
    x, y, err = trace(flow, 0, 3)  # content moves 2 px left per frame
    inner = (slice(10, -10), slice(10, -20))
    gx = np.arange(80)[None, :].repeat(64, 0)
    assert np.median(np.abs(x[inner] - (gx[inner] - 6))) < 0.5
    assert np.isinf(err[:, :3]).all()  # these pixels leave the frame on the left


def test_propagation_between_keyframes_recovers_most_labels():
    frames, labels = shifting_video()
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
    frames, labels = shifting_video()
    flow = compute_flow(frames, load_config(REPO / "params.yaml").flow)
    with pytest.raises(ValueError):
        propagate(labels, [], flow)


def test_propagating_the_human_labels_as_they_stand():
    """Frames labelled in full are keyframes, exactly as propagate-K carries them; a partial
    label (a sample, a class layer) stays on its own frame; nothing labelled, nothing carried."""
    frames, labels, _ = generate(8, 64, 80, seed=2)
    flow = compute_flow(frames, load_config(REPO / "params.yaml").flow)
    human = np.full_like(labels, VOID)
    annotated = np.zeros(labels.shape, bool)
    assert (propagate_human(human, annotated, flow) == VOID).all()
    human[[0, 5]] = labels[[0, 5]]
    annotated[[0, 5]] = True
    assert (propagate_human(human, annotated, flow) == propagate(human, [0, 5], flow)).all()
    human[2, :10, :10] = labels[2, :10, :10]  # a rectangle of frame 2
    annotated[2, :10, :10] = True
    layers = np.full_like(labels, VOID)
    layers[3, 30:40, 30:40] = 1  # a class layer's region in frame 3
    out = propagate_human(human, annotated, flow, layers)
    assert (out[2, :10, :10] == labels[2, :10, :10]).all() and (out[3, 30:40, 30:40] == 1).all()
    same = propagate(human, [0, 5], flow)
    rest = np.ones(labels.shape, bool)
    rest[2, :10, :10] = rest[3, 30:40, 30:40] = False
    assert (out[rest] == same[rest]).all()
