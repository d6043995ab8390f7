"""Labels named for a whole region with one click (superpixels) are told apart from drawn ones,
kept across a saved round, and reach the label generator as evidence (``fusion.region_odds``)."""

import numpy as np

from hvsa.annotation.annotator import Annotation
from hvsa.config import load_config
from hvsa.data.arrays import save_arrays
from hvsa.data.synth import generate
from hvsa.data.video import VOID
from hvsa.method.clicks import ClickCount
from hvsa.method.samples import build_samples
from hvsa.rounds.state import LoopState
from tests.conftest import REPO

CFG = load_config(REPO / "params.yaml")


def _annotation(samples, sid: int, labels_of) -> Annotation:
    frame, box, mask = samples.region(sid)
    labels = np.where(mask, labels_of(frame, box, mask), VOID).astype(np.uint8)
    return Annotation(sid, frame, box, labels, ClickCount(1, 0, 0), "oracle", "test", 0.0, 0.0)


def test_a_superpixel_named_as_one_class_is_marked_named_and_a_drawn_one_is_not(tmp_path):
    frames, truth, _ = generate(3, 48, 64, seed=2)
    sp = build_samples(frames, CFG.samples, "superpixel")
    state = LoopState.empty(3, truth.shape[1:])
    ids = sp.table.sample_id[sp.table.frame == 1].to_numpy()
    one, drawn = int(ids[0]), int(ids[1])
    named = _annotation(sp, one, lambda f, b, m: np.full(m.shape, 2, np.uint8))

    def two_classes(f, b, m):
        out = np.full(m.shape, 1, np.uint8)
        out[: m.shape[0] // 2] = 3
        if len(np.unique(out[m])) < 2:  # a flat superpixel: split it by columns instead
            out[:, : m.shape[1] // 2] = 3
        return out

    state.apply([named, _annotation(sp, drawn, two_classes)], sp, [1, 2])
    frame, box, mask = sp.region(one)
    assert state.named[frame][box][mask].all()
    frame, box, mask = sp.region(drawn)
    assert len(np.unique(state.human[frame][box][mask])) == 2
    assert not state.named[frame][box][mask].any()
    assert state.named.sum() == sp.region(one)[2].sum()

    # whole frames are drawn: labelling the named pixels' frame again in full clears the mark
    fr = build_samples(frames, CFG.samples, "frame")
    whole = _annotation(fr, 1, lambda f, b, m: truth[f][b])
    state.apply([whole], fr, [3])
    assert not state.named.any() and (state.human[1] == truth[1]).all()
    assert (state.drawn_human() == state.human).all()

    # a saved round keeps the marks; a round saved before they existed loads with none
    state.apply([named], sp, [4])
    state.save(tmp_path / "human.npz")
    again = LoopState.load(tmp_path / "human.npz")
    np.testing.assert_array_equal(again.named, state.named)
    save_arrays(tmp_path / "old.npz", labels=state.human, annotated=state.annotated,
                provenance=state.provenance, used=np.zeros(0, np.int64),
                clicks_total=np.int64(0))  # fmt: skip
    old = LoopState.load(tmp_path / "old.npz")
    assert old.named is None and old.drawn_human() is old.human


def test_a_run_without_named_labels_holds_no_marks(tmp_path):
    """Frames and rectangles never allocate the marks: a long video's state keeps its size."""
    frames, truth, _ = generate(3, 48, 64, seed=2)
    fr = build_samples(frames, CFG.samples, "frame")
    state = LoopState.empty(3, truth.shape[1:])
    state.apply([_annotation(fr, 0, lambda f, b, m: truth[f][b])], fr, [1])
    assert state.named is None
    state.save(tmp_path / "human.npz")
    assert "named" not in np.load(tmp_path / "human.npz").files
    assert LoopState.load(tmp_path / "human.npz").named is None


def test_named_labels_take_no_part_in_the_radius_calibration(monkeypatch):
    """A superpixel's fill is no truth to score a radius against: the calibration sees the
    drawn labels alone, and the fills' pixels as never answered (they end no chain there)."""
    from types import SimpleNamespace

    from hvsa.rounds import steps

    frames, truth, _ = generate(3, 48, 64, seed=2)
    sp = build_samples(frames, CFG.samples, "superpixel")
    fr = build_samples(frames, CFG.samples, "frame")
    state = LoopState.empty(3, truth.shape[1:])
    one = int(sp.table.sample_id[sp.table.frame == 1].to_numpy()[0])
    state.apply([_annotation(sp, one, lambda f, b, m: np.full(m.shape, 2, np.uint8))], sp, [1])
    state.apply([_annotation(fr, 0, lambda f, b, m: truth[f][b])], fr, [2])
    seen = {}

    def calibrated(cfg, probs, human, frames, flow, spoken, unseen):
        seen["human"], seen["spoken"] = human, spoken
        return cfg

    monkeypatch.setattr(steps, "calibrated", calibrated)
    ctx = SimpleNamespace(video=SimpleNamespace(frames=frames), flow=None)
    steps.fusion_settings(ctx, SimpleNamespace(probs=None), state, CFG)
    named = state.named
    assert named.any() and (seen["human"][named] == VOID).all(), "fills left out"
    assert (seen["human"][0] == truth[0]).all(), "drawn frame kept"
    assert not seen["spoken"][named].any() and seen["spoken"][0].all()
    assert (state.human[named] == 2).all(), "the round's own labels untouched"
