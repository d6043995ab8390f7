import re

import numpy as np
import pytest
import torch

from hvsa.annotation.submission import check_patch
from hvsa.data.label_io import compose
from hvsa.data.synth import generate
from hvsa.data.video import VOID
from hvsa.errors import HvsaError
from hvsa.method.finetune import (
    TrainingData,
    _pair_losses,
    crop_pairs,
    finetune,
    step_lr,
    supervised_loss,
    temporal_loss,
)
from hvsa.method.metrics import miou
from hvsa.method.network import SegmentationNet
from hvsa.method.samples import build_samples, rect_segments
from tests.conftest import tiny_config


def test_rect_grid_covers_the_frame_with_partial_edge_cells():
    seg = rect_segments((40, 50), 16)
    assert seg.max() + 1 == 3 * 4
    assert (seg == 0).sum() == 256
    assert (seg == 11).sum() == 8 * 2  # bottom-right cell: 8 rows × 2 columns


@pytest.mark.parametrize("kind", ["frame", "rect", "superpixel"])
def test_samples_partition_every_frame(kind):
    frames = generate(3, 48, 64, seed=0)[0]
    s = build_samples(frames, tiny_config().samples, kind)
    assert s.table["n_pixels"].sum() == 3 * 48 * 64
    assert (s.table["sample_id"] == np.arange(len(s.table))).all()
    ids = s.global_ids()
    assert np.bincount(ids.ravel()).tolist() == s.table["n_pixels"].tolist()
    for sid in (0, len(s.table) - 1):
        frame, box, mask = s.region(sid)
        row = s.table.iloc[sid]
        assert frame == row.frame and mask.sum() == row.n_pixels
        assert mask.shape == (row.y1 - row.y0, row.x1 - row.x0)
    if kind == "frame":
        assert len(s.table) == 3
    if kind == "superpixel":
        assert len(s.table) > 3 * 10


def test_miou_ignores_void_and_counts_void_prediction_as_miss():
    truth = np.array([[0, 0, 1, VOID]], np.uint8)
    pred = np.array([[0, 1, 1, 0]], np.uint8)
    value, ious = miou(truth, pred, 2)
    assert ious.tolist() == pytest.approx([0.5, 0.5])
    assert value == pytest.approx(0.5)
    value, _ = miou(truth, np.array([[0, 0, VOID, 1]], np.uint8), 2)
    assert value == pytest.approx(0.5)  # class 1 missed entirely, class 0 perfect


def test_compose_keeps_every_human_pixel():
    pred = np.zeros((2, 4, 4), np.uint8)
    human = np.full((2, 4, 4), VOID, np.uint8)
    human[1, 1:3, 1:3] = 3
    out = compose(pred, human)
    assert (out[1, 1:3, 1:3] == 3).all()
    assert (out[human == VOID] == 0).all()


def test_supervised_loss_only_sees_labelled_pixels():
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    empty = torch.full((1, 2, 2), VOID)
    assert float(supervised_loss(logits, empty).detach()) == 0.0
    labels = empty.clone()
    labels[0, 0, 0] = 1
    assert float(supervised_loss(logits, labels).detach()) == pytest.approx(np.log(3), rel=1e-5)


def test_temporal_loss_zero_for_flow_consistent_predictions():
    probs_next = torch.rand(1, 4, 8, 10).softmax(1)
    flow = torch.zeros(1, 8, 10, 2)
    flow[..., 0] = 2.0  # pixel x of frame t is at x+2 in frame t+1
    probs = torch.roll(probs_next, shifts=-2, dims=-1)  # P_t(x) = P_{t+1}(x+2)
    valid = torch.ones(1, 8, 10, dtype=torch.bool)
    valid[..., -2:] = False  # leaving the frame
    assert float(temporal_loss(probs, probs_next, flow, valid)) == pytest.approx(0, abs=1e-5)


def test_temporal_loss_penalises_disagreement_only_where_valid():
    a = torch.zeros(1, 2, 4, 4)
    a[:, 0] = 1
    b = torch.zeros(1, 2, 4, 4)
    b[:, 1] = 1
    flow = torch.zeros(1, 4, 4, 2)
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    assert float(temporal_loss(a, b, flow, valid)) == pytest.approx(1.0)
    assert float(temporal_loss(a, b, flow, torch.zeros_like(valid))) == 0.0


def test_expected_miou_is_one_when_certain_and_lower_when_unsure():
    from hvsa.method.metrics import expected_miou

    certain = np.zeros((1, 2, 2, 2))
    certain[0, 0, 0] = 1
    certain[0, 1, 1] = 1
    none = np.full((1, 2, 2), VOID, np.uint8)
    assert expected_miou(certain, none) == pytest.approx(1.0)
    unsure = np.full((1, 2, 2, 2), 0.5)
    unsure[0, 0] += 0.1
    unsure[0, 1] -= 0.1
    low = expected_miou(unsure, none)
    assert 0 < low < 1
    human = none.copy()
    human[0, 1, :] = 1  # a human labels half the pixels: the estimate rises
    assert expected_miou(unsure, human) > low


def test_without_neighbour_gradient_only_the_first_frame_of_a_pair_learns():
    torch.manual_seed(0)
    model = SegmentationNet("lraspp_mobilenet_v3_large", 3).eval()
    labels = torch.full((3, 32, 40), VOID, dtype=torch.long)
    labels[1] = 2  # only the second frame of pair (0, 1) is labelled
    data = TrainingData(
        frames=torch.rand(3, 3, 32, 40) * 255,
        labels=labels,
        flow=torch.zeros(2, 32, 40, 2),
        valid=torch.ones(2, 32, 40, dtype=torch.bool),
    )
    pairs = crop_pairs(data, torch.tensor([0]), None, np.random.default_rng(0))
    ce, tc = _pair_losses(model, pairs, neighbour_grad=False, device=torch.device("cpu"))
    assert float(ce.detach()) == 0.0 and float(tc.detach()) > 0
    tc.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    ce_both, _ = _pair_losses(model, pairs, neighbour_grad=True, device=torch.device("cpu"))
    assert float(ce_both.detach()) > 0, "with its gradient the neighbour's labels teach too"


def test_a_cropped_pair_keeps_its_frames_labels_and_flow_aligned():
    n, h, w = 4, 20, 30
    frames = torch.arange(n * h * w, dtype=torch.float32).reshape(n, 1, h, w).expand(n, 3, h, w)
    labels = torch.arange(n * h * w).reshape(n, h, w) % 7
    flow = torch.zeros(n - 1, h, w, 2)
    flow[..., 0] = 3.0  # everything moves 3 px right between frames
    data = TrainingData(frames, labels, flow, torch.ones(n - 1, h, w, dtype=torch.bool))
    a = torch.tensor([0, 2, 1])
    pairs = crop_pairs(data, a, (8, 10), np.random.default_rng(1))
    assert pairs.frames.shape == (6, 3, 8, 10) and pairs.labels.shape == (6, 8, 10)
    assert pairs.flow.shape == (3, 8, 10, 2) and pairs.valid.shape == (3, 8, 10)
    for i, t in enumerate(a.tolist()):
        # the window's top-left pixel value says where it was cut; both frames share it
        top, left = divmod(int(pairs.frames[i, 0, 0, 0]) - t * h * w, w)
        window = (slice(top, top + 8), slice(left, left + 10))
        assert torch.equal(pairs.frames[i, 0], frames[t, 0][window])
        assert torch.equal(pairs.frames[3 + i, 0], frames[t + 1, 0][window])
        assert torch.equal(pairs.labels[3 + i], labels[t + 1][window])
    # a pixel whose flow leaves the window has no temporal target; the others keep theirs
    assert not pairs.valid[:, :, 7:].any() and pairs.valid[:, :, :7].all()
    same = crop_pairs(data, a, None, np.random.default_rng(1))
    assert same.frames.shape == (6, 3, h, w) and same.valid.all()


def test_a_label_patch_is_refused_for_shape_region_or_class_in_one_line():
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True
    good = np.full((4, 5), VOID, np.uint8)
    good[mask] = 1
    check_patch(7, good, mask, num_classes=3)  # accepted: nothing raised
    cases = {
        "labels are 5×3, the sample's box is 5×4": np.full((3, 5), VOID, np.uint8),
        "labels are of shape (4, 5, 3)": np.full((4, 5, 3), VOID, np.uint8),
        "outside the sample's region": np.where(~mask, 1, VOID).astype(np.uint8),
        "class 9 is not in the list": np.where(mask, 9, VOID).astype(np.uint8),
    }
    for message, patch in cases.items():
        with pytest.raises(HvsaError, match=re.escape(message)):
            check_patch(7, patch, mask, num_classes=3)


def test_pretraining_crops_are_crop_sized_and_keep_labels_on_their_pixels():
    from hvsa.method.pretrain import _augment

    h, w = 40, 60
    x = torch.zeros(3, 3, h, w)
    y = torch.zeros(3, h, w, dtype=torch.long)
    x[:, :, :, 30:] = 255  # right half white and class 1
    y[:, :, 30:] = 1
    gen = torch.Generator().manual_seed(0)
    xb, yb = _augment(x, y, 0.8, gen, crop=(16, 24))
    assert xb.shape == (3, 3, 16, 24) and yb.shape == (3, 16, 24)
    # the labels stay on the pixels they name (up to the one resampled column at the border)
    assert ((yb == 1) != (xb[:, 0] > 127)).float().mean() < 1 / 24
    whole, _ = _augment(x, y, 0.8, gen)
    assert whole.shape == (3, 3, h, w), "without a crop the whole frame size comes back"


def test_learning_rate_warms_up_then_falls_to_zero_with_cosine():
    cfg = tiny_config(**{"finetune.steps": 10, "finetune.lr": 1e-3}).finetune
    assert [step_lr(s, cfg) for s in (0, 9)] == [1e-3, 1e-3], "constant by default"
    cfg = cfg.model_copy(update={"schedule": "cosine", "warmup": 2})
    lrs = [step_lr(s, cfg) for s in range(10)]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1e-3), "warm-up rises to lr"
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False)), "then only falls"
    assert 0 < lrs[-1] < 1e-4


def test_averaging_the_last_steps_keeps_the_mean_of_those_weights():
    torch.manual_seed(0)
    model = SegmentationNet("lraspp_mobilenet_v3_large", 3).eval()
    labels = torch.full((3, 32, 40), VOID, dtype=torch.long)
    labels[0] = 1
    data = TrainingData(
        frames=torch.rand(3, 3, 32, 40) * 255,
        labels=labels,
        flow=torch.zeros(2, 32, 40, 2),
        valid=torch.ones(2, 32, 40, dtype=torch.bool),
    )
    cfg = tiny_config(**{"finetune.steps": 4, "finetune.batch_size": 1}).finetune
    seen: list[list[torch.Tensor]] = []
    real_step = torch.optim.AdamW.step

    def record(self, *a, **k):  # the weights after every optimiser step
        out = real_step(self, *a, **k)
        seen.append([p.detach().clone() for p in model.parameters()])
        return out

    torch.optim.AdamW.step = record
    try:
        finetune(model, data, cfg.model_copy(update={"average_last": 0.5}), torch.device("cpu"))
    finally:
        torch.optim.AdamW.step = real_step
    assert len(seen) == 4
    for p, a, b in zip(model.parameters(), seen[2], seen[3], strict=True):
        torch.testing.assert_close(p.detach(), (a + b) / 2)
    moved = [not torch.equal(a, b) for a, b in zip(seen[2], seen[3], strict=True)]
    assert any(moved), "the last two steps differ, so the mean is neither of them"


def test_keep_known_adds_the_networks_sure_labels_only_where_nobody_spoke_on_labelled_frames():
    from types import SimpleNamespace

    from hvsa.config import load_config
    from hvsa.method.predict import Prediction
    from hvsa.rounds.steps import teaching_labels
    from tests.conftest import REPO

    human = np.full((3, 4, 4), VOID, np.uint8)
    human[1, 0, :2] = 2  # frame 1 labelled in part
    annotated = human != VOID
    annotated[1, 3, 3] = True  # a pixel the annotator called void: spoken
    probs = torch.zeros(3, 3, 4, 4)
    probs[:, 0] = 0.95  # sure of class 0 everywhere ...
    probs[:, 1] = 0.05
    probs[1, :, 2, :] = torch.tensor([0.5, 0.3, 0.2])[:, None]  # ... but row 2 of frame 1
    pred = Prediction(probs.half(), torch.zeros(3, 1, 1, 1))
    ctx = SimpleNamespace(work=(4, 4))
    state = SimpleNamespace(human=human, annotated=annotated)
    cfg = load_config(REPO / "params.yaml")
    cfg.finetune.pseudo_threshold, cfg.finetune.keep_known = None, 0.9
    cfg.finetune.keep_known_ratio = None  # every sure pixel
    labels = teaching_labels(ctx, state, cfg, lambda: pred).numpy()
    assert (labels[1, 0, :2] == 2).all()  # the human's labels stay
    assert labels[1, 3, 3] == VOID  # spoken void stays void
    assert (labels[1, 2] == VOID).all()  # the network is not sure there
    assert (labels[1, 1] == 0).all() and labels[1, 0, 3] == 0  # sure, nobody spoke: its label
    assert (labels[[0, 2]] == VOID).all()  # frames without human labels are left alone
    assert (human[1, 1] == VOID).all()  # state.human untouched
    cfg.finetune.keep_known = None
    assert (teaching_labels(ctx, state, cfg, lambda: pred).numpy() == human).all()


def test_keep_known_ratio_adds_at_most_that_many_times_the_answered_pixels():
    from types import SimpleNamespace

    from hvsa.config import load_config
    from hvsa.method.predict import Prediction
    from hvsa.rounds.steps import teaching_labels
    from tests.conftest import REPO

    human = np.full((2, 20, 20), VOID, np.uint8)
    human[1, :2, :10] = 1  # 20 pixels answered; 380 more the network is sure of
    probs = torch.zeros(2, 3, 20, 20)
    probs[:, 2] = 0.97
    pred = Prediction(probs.half(), torch.zeros(2, 1, 1, 1))
    ctx = SimpleNamespace(work=(20, 20))
    state = SimpleNamespace(human=human, annotated=human != VOID)
    cfg = load_config(REPO / "params.yaml")
    cfg.finetune.pseudo_threshold, cfg.finetune.keep_known = None, 0.9
    cfg.finetune.keep_known_ratio = 2.0
    labels = teaching_labels(ctx, state, cfg, lambda: pred).numpy()
    added = int((labels[1] == 2).sum())
    assert 20 <= added <= 65, added  # about 40 of the 380 (a random share: 2 x 20 expected)
    assert (labels[1, :2, :10] == 1).all() and (labels[0] == VOID).all()
    again = teaching_labels(ctx, state, cfg, lambda: pred).numpy()
    np.testing.assert_array_equal(again, labels)  # the same state draws the same pixels
    cfg.finetune.keep_known_ratio = 100.0  # more than there are: every sure pixel
    assert int((teaching_labels(ctx, state, cfg, lambda: pred).numpy()[1] == 2).sum()) == 380


@pytest.mark.parametrize("arch", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_each_architecture_gives_logits_at_the_input_size_and_its_features(arch):
    # both of params.yaml's model.arch choices: logits for every pixel, and the head's hidden
    # map that selection clusters samples by, a few times coarser than the frame
    model = SegmentationNet(arch, 5).eval()
    with torch.no_grad():
        logits, hidden = model(torch.rand(1, 3, 64, 96) * 255)
    assert logits.shape == (1, 5, 64, 96)
    assert hidden.ndim == 4 and hidden.shape[0] == 1 and hidden.shape[-1] < 96
