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


def _fill_and_frame(fill_frames, drawn_frame):
    """A state with a one-class superpixel fill on each of ``fill_frames`` and, where given,
    ``drawn_frame`` drawn in full from the truth."""
    frames, truth, _ = generate(len(fill_frames) + 2, 48, 64, seed=2)
    sp = build_samples(frames, CFG.samples, "superpixel")
    state = LoopState.empty(len(frames), truth.shape[1:])
    fill = [int(sp.table.sample_id[sp.table.frame == f].to_numpy()[0]) for f in fill_frames]
    state.apply([_annotation(sp, sid, lambda f, b, m: np.full(m.shape, 2, np.uint8))
                 for sid in fill], sp, list(range(1, len(fill) + 1)))  # fmt: skip
    if drawn_frame is not None:
        fr = build_samples(frames, CFG.samples, "frame")
        state.apply([_annotation(fr, drawn_frame, lambda f, b, m: truth[f][b])], fr, [99])
    return frames, truth, state


def test_named_labels_carry_votes_but_are_no_truth_for_the_radius_calibration(monkeypatch):
    """A superpixel's fill is no truth to score a radius against: the calibration probes and
    scores the drawn labels alone, while every label, fills included, still carries votes and
    ends chains as in the round's fusion."""
    from types import SimpleNamespace

    from hvsa.rounds import steps

    frames, truth, state = _fill_and_frame([1], drawn_frame=0)
    seen = {}

    def calibrated(cfg, probs, human, frames, flow, spoken, unseen, truth):
        seen.update(human=human, spoken=spoken, truth=truth)
        return cfg

    monkeypatch.setattr(steps, "calibrated", calibrated)
    ctx = SimpleNamespace(video=SimpleNamespace(frames=frames), flow=None)
    steps.fusion_settings(ctx, SimpleNamespace(probs=None), state, CFG)
    named = state.named
    assert named.any() and (seen["truth"][named] == VOID).all(), "fills are no truth"
    assert (seen["truth"][~named] == state.human[~named]).all(), "drawn labels are"
    assert (seen["truth"][0] == truth[0]).all()
    assert seen["human"] is state.human and seen["spoken"] is state.annotated, "fills vote"
    assert (state.human[named] == 2).all(), "the round's own labels untouched"


def test_a_run_of_superpixels_alone_keeps_the_configured_radius(monkeypatch):
    """Fills on more frames than the calibration waits for, and no drawn label: nothing is
    fused to score a radius, and the configured one stays."""
    from types import SimpleNamespace

    from hvsa.method import calibrate
    from hvsa.rounds import steps

    count = CFG.fusion.calibration_probes + 1
    frames, _, state = _fill_and_frame(list(range(count)), drawn_frame=None)
    assert len(calibrate.labelled_frames(state.human)) == count

    def no_scoring(*args, **kwargs):
        raise AssertionError("a radius was scored on fills")

    monkeypatch.setattr(calibrate, "leave_one_out_confusions", no_scoring)
    cfg = CFG.model_copy(update={"fusion": CFG.fusion.model_copy(
        update={"guided_radius": 1, "radius_choices": [0, 1, 2, 3]})})  # fmt: skip
    ctx = SimpleNamespace(video=SimpleNamespace(frames=frames), flow=None)
    out = steps.fusion_settings(ctx, SimpleNamespace(probs=None), state, cfg)
    assert out.guided_radius == 1
