"""The correction click model (hvsa/method/corrections.py): its worked examples, its rules, and
the corrector annotator that uses it."""

import numpy as np
import pytest

from hvsa.annotation.annotator import CorrectorAnnotator
from hvsa.data.video import VOID
from hvsa.method.clicks import layer_clicks, region_clicks
from hvsa.method.corrections import correct, correct_layer, reassign, wrong_regions

ROAD, SIDEWALK, CAR, POLE = 0, 1, 2, 3
LEAVE = (2, 16, 0.05)  # params.yaml: annotation.leave_width, leave_pixels, leave_share


def _road_with_patch(cls: int) -> np.ndarray:
    labels = np.full((32, 32), ROAD, np.uint8)
    labels[10:20, 8:24] = cls
    return labels


def _everywhere(shape) -> np.ndarray:
    return np.ones(shape, bool)


def test_a_right_prefill_costs_the_accept_click():
    truth = _road_with_patch(CAR)
    fix = correct(truth, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert fix.total == 1 and fix.by_tool == {"accept": 1}
    assert (fix.labels == truth).all()


def test_a_region_of_the_wrong_class_is_reassigned_with_one_click():
    truth = _road_with_patch(SIDEWALK)
    fix = correct(_road_with_patch(CAR), truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert (fix.reassigned, fix.redrawn, fix.accepted) == (1, 0, 1)
    assert fix.total == 2 < region_clicks(truth, 2.0).total == 10
    assert (fix.labels == truth).all()


def test_a_missed_region_is_redrawn_as_a_polygon():
    truth = _road_with_patch(SIDEWALK)
    prefill = np.full_like(truth, ROAD)
    fix = correct(prefill, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    # close-and-name (1) + the patch's 4 corners + accept (1)
    assert (fix.reassigned, fix.redrawn, fix.vertices, fix.crossings) == (0, 1, 4, 0)
    assert fix.total == 6 and fix.by_tool == {"polygon": 5, "accept": 1}
    assert (fix.labels == truth).all()


def test_a_region_at_the_edge_pays_its_crossings():
    truth = _road_with_patch(CAR)
    truth[:, 28:] = SIDEWALK  # a strip along the right edge: its border crosses top and bottom
    fix = correct(_road_with_patch(CAR), truth, _everywhere(truth.shape), 2.0, *LEAVE)
    # close-and-name (1) + no inner vertex (the strip's corners lie on the edge) + 2 crossings
    # + accept (1); from nothing: 3 regions + 8 vertices + 2 crossings
    assert (fix.reassigned, fix.redrawn, fix.vertices, fix.crossings) == (0, 1, 0, 2)
    assert fix.total == 4 < region_clicks(truth, 2.0).total == 13
    assert (fix.labels == truth).all()


def test_drawing_from_nothing_when_fixing_is_no_cheaper():
    truth = np.full((20, 20), ROAD, np.uint8)
    truth[:, 14:] = CAR
    # fixing an all-road prefill (1 + 2 crossings + accept) against drawing from nothing (2
    # regions + 2 crossings): the person draws from nothing, and hands in the exact labels
    fix = correct(np.full_like(truth, ROAD), truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert fix.from_scratch == region_clicks(truth, 2.0) and fix.total == 4
    assert fix.by_tool == {"polygon": 4} and (fix.labels == truth).all()


def test_wrong_regions_are_what_correct_redraws_and_leaves():
    truth = np.full((160, 160), ROAD, np.uint8)
    truth[:, 80:] = SIDEWALK
    truth[20:50, 20:50] = CAR
    truth[100:110, 100:120] = CAR
    prefill = truth.copy()
    prefill[:, 80:82] = ROAD  # a thin band along the border: left
    prefill[100:110, 100:120] = SIDEWALK  # a car on the sidewalk missed: redrawn
    prefill[20:50, 20:50] = SIDEWALK  # the car labelled sidewalk: reassigned, not a wrong region
    everywhere = _everywhere(truth.shape)
    fixed, reassigned = reassign(prefill, truth, everywhere)
    assert reassigned == 1 and (fixed[20:50, 20:50] == CAR).all()
    regions = list(wrong_regions(fixed, truth, everywhere, 2.0, *LEAVE))
    assert sorted((r.cls, int(r.part.sum()), r.left) for r in regions) == [
        (SIDEWALK, 320, True), (CAR, 200, False)]
    fix = correct(prefill, truth, everywhere, 2.0, *LEAVE)
    assert (fix.reassigned, fix.redrawn, fix.left_pixels) == (1, 1, 320)


def _halves() -> np.ndarray:
    """Road left, sidewalk right, a car on the road: 13 clicks from nothing."""
    truth = np.full((32, 32), ROAD, np.uint8)
    truth[:, 16:] = SIDEWALK
    truth[4:10, 4:10] = CAR
    return truth


def test_a_thin_band_along_a_border_is_left_and_scored_as_handed_in():
    truth = np.full((160, 160), ROAD, np.uint8)
    truth[:, 80:] = SIDEWALK
    truth[20:50, 20:50] = CAR
    prefill = truth.copy()
    prefill[:, 80:82] = ROAD  # the border 2 px off along its whole length: 2.5 % of the sidewalk
    fix = correct(prefill, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert fix.total == 1 and fix.left_pixels == 320
    assert (fix.labels[:, 80:82] == ROAD).all()  # handed in wrong: what a person leaves
    wider = truth.copy()
    wider[:, 80:84] = ROAD  # 4 px: wide enough to fix; both its sides cross both edges
    fix = correct(wider, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert (fix.redrawn, fix.crossings, fix.total, fix.left_pixels) == (1, 4, 6, 0)


def test_the_same_band_along_a_thin_object_is_fixed():
    truth = np.full((160, 160), ROAD, np.uint8)
    truth[:, 80:86] = POLE  # a pole 6 px wide, top to bottom
    prefill = truth.copy()
    prefill[:, 80:82] = ROAD  # a third of it missed: 2 px wide, but a third of the pole
    fix = correct(prefill, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert (fix.redrawn, fix.left_pixels) == (1, 0) and (fix.labels == truth).all()
    # in a class layer of poles too
    fix = correct_layer(prefill, truth, POLE, 2.0, *LEAVE)
    assert fix.left_pixels == 0 and ((fix.labels == POLE) == (truth == POLE)).all()


def _halves() -> np.ndarray:
    """Road left, sidewalk right, a car on the road: 13 clicks from nothing."""
    truth = np.full((32, 32), ROAD, np.uint8)
    truth[:, 16:] = SIDEWALK
    truth[4:10, 4:10] = CAR
    return truth


def test_a_small_spot_is_left_unless_it_is_an_object_of_its_own():
    truth = np.full((160, 160), ROAD, np.uint8)
    truth[20:50, 20:50] = CAR
    prefill = truth.copy()
    prefill[100:103, 100:103] = SIDEWALK  # a false 9 px region: one click reassigns it
    fix = correct(prefill, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert (fix.reassigned, fix.total, fix.left_pixels) == (1, 2, 0)
    assert (fix.labels == truth).all()
    notched = truth.copy()
    notched[20:23, 20:23] = ROAD  # the car's corner missed: 9 px, 1 % of the car: left
    fix = correct(notched, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert fix.total == 1 and fix.left_pixels == 9
    sign = truth.copy()
    sign[100:103, 100:103] = SIDEWALK  # a 9 px object of its own, missed: all of it, fixed
    fix = correct(truth, sign, _everywhere(truth.shape), 2.0, *LEAVE)
    assert (fix.redrawn, fix.left_pixels) == (1, 0) and (fix.labels == sign).all()


def test_the_polygon_cuts_across_pixels_of_its_own_class():
    truth = np.full((160, 160), ROAD, np.uint8)
    truth[20:140, 80:90] = POLE
    prefill = truth.copy()
    prefill[60:100, 80:86] = ROAD  # a notch on the pole's left side: 6 px wide, 40 tall
    fix = correct(prefill, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    # its left corners border the road: placed with care (2); its right side lies in the pole
    # and is one loose vertex (1); + close-and-name + accept
    assert (fix.redrawn, fix.vertices, fix.total) == (1, 3, 5)
    assert (fix.labels == truth).all()


def test_fixing_never_costs_more_than_drawing_from_nothing():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.repeat(rng.integers(0, 3, (8, 8)), 4, 0), 4, 1).astype(np.uint8)
    prefill = np.repeat(np.repeat(rng.integers(0, 3, (8, 8)), 4, 0), 4, 1).astype(np.uint8)
    fix = correct(prefill, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert fix.total <= region_clicks(truth, 2.0).total
    if fix.from_scratch is not None:
        assert (fix.labels == truth).all()


def test_void_of_the_truth_keeps_the_prefill_and_costs_nothing():
    truth = _road_with_patch(CAR)
    truth[0:4, :] = VOID
    prefill = _road_with_patch(CAR)
    prefill[0:4, :] = SIDEWALK
    fix = correct(prefill, truth, _everywhere(truth.shape), 2.0, *LEAVE)
    assert fix.total == 1
    assert (fix.labels[0:4] == SIDEWALK).all()


def test_outside_the_region_is_void():
    truth = _road_with_patch(CAR)
    region = np.zeros(truth.shape, bool)
    region[:, :16] = True
    fix = correct(truth, truth, region, 2.0, *LEAVE)
    assert (fix.labels[:, 16:] == VOID).all() and (fix.labels[:, :16] == truth[:, :16]).all()


def test_a_class_layer_is_corrected_on_its_class_alone():
    truth = np.full((40, 40), ROAD, np.uint8)
    truth[5:15, 5:15] = CAR
    truth[25:35, 25:35] = CAR
    prefill = truth.copy()
    prefill[25:35, 25:35] = SIDEWALK  # the second car missed by the prefill
    prefill[20:24, 2:6] = CAR  # and a car that is not there
    fix = correct_layer(prefill, truth, CAR, 2.0, *LEAVE)
    # the layer shows the class alone: the false car is a region, reassigned (1); the missed
    # car is no region of the layer, so it is drawn (1 + 4 vertices); accept (1). From
    # nothing: 2 × (1 + 4)
    assert (fix.reassigned, fix.redrawn, fix.vertices, fix.accepted) == (1, 1, 4, 1)
    assert fix.total == 7 < layer_clicks(truth, CAR, 2.0).total == 10
    assert set(np.unique(fix.labels)) == {CAR, VOID}
    assert ((fix.labels == CAR) == (truth == CAR)).all()


def test_a_layer_no_cheaper_to_fix_is_drawn_from_nothing():
    truth = np.full((40, 40), ROAD, np.uint8)
    truth[5:15, 5:15] = CAR
    fix = correct_layer(np.full_like(truth, ROAD), truth, CAR, 2.0, *LEAVE)
    assert fix.from_scratch == layer_clicks(truth, CAR, 2.0) and fix.total == 5
    assert ((fix.labels == CAR) == (truth == CAR)).all()


def test_a_layer_fix_can_be_priced_even_where_drawing_is_cheaper():
    # the missed car redrawn (1 + 4 vertices) and the accept click: 6, one more than drawing
    # the layer from nothing (5), which scratch=False does not fall back to
    truth = np.full((40, 40), ROAD, np.uint8)
    truth[5:15, 5:15] = CAR
    fix = correct_layer(np.full_like(truth, ROAD), truth, CAR, 2.0, *LEAVE, scratch=False)
    assert fix.from_scratch is None
    assert (fix.redrawn, fix.vertices, fix.accepted) == (1, 4, 1)
    assert fix.total == 6 > layer_clicks(truth, CAR, 2.0).total == 5
    assert ((fix.labels == CAR) == (truth == CAR)).all()


class _Samples:
    """Two whole-frame samples of a 2-frame video."""

    granularity = "frame"

    def region(self, sid):
        return sid, (slice(0, 32), slice(0, 32)), np.ones((32, 32), bool)


class _Video:
    def __init__(self, labels):
        self.labels = labels
        self.path = "generated"


def test_the_corrector_hands_in_its_fix_with_clicks_by_tool():
    truth = np.stack([_road_with_patch(SIDEWALK), _road_with_patch(CAR)])
    prefill = np.stack([_road_with_patch(CAR), _road_with_patch(CAR)])
    corrector = CorrectorAnnotator(2.0, *LEAVE)
    first, second = corrector.annotate(_Video(truth), _Samples(), [0, 1], prefill.__getitem__)
    assert first.tool == "correction" and first.clicks.total == 2
    assert first.detail["clicks_by_tool"] == {"reassign": 1, "accept": 1}
    assert (first.labels == truth[0]).all()
    assert second.clicks.total == 1  # right already: accepted
    # without a prefill (nothing written yet) it redraws, as the oracle does
    (redrawn,) = corrector.annotate(_Video(truth), _Samples(), [0])
    assert redrawn.tool == "polygon" and redrawn.clicks == region_clicks(truth[0], 2.0)


@pytest.mark.parametrize("leave_width", [0, 1, 2, 3])
def test_a_wider_leave_never_costs_more(leave_width):
    truth = np.full((48, 48), ROAD, np.uint8)
    truth[:, 24:] = SIDEWALK
    truth[30:40, 5:15] = CAR
    prefill = np.full_like(truth, ROAD)
    prefill[:, 22:] = SIDEWALK
    narrow = correct(prefill, truth, _everywhere(truth.shape), 2.0, 0, 0, 0.05)
    wide = correct(prefill, truth, _everywhere(truth.shape), 2.0, leave_width, 16, 0.05)
    assert wide.total <= narrow.total
    assert wide.left_pixels >= narrow.left_pixels == 0
