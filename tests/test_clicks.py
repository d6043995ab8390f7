import numpy as np

from hvsa.data.video import VOID
from hvsa.method.clicks import ClickCount, boundary_crossings, dominant_label, region_clicks


def test_two_halves_cost_regions_plus_crossings():
    mask = np.zeros((6, 6), np.uint8)
    mask[:, 3:] = 1
    # two regions, no vertex strictly inside, boundary crosses top and bottom edge
    assert region_clicks(mask, 2.0) == ClickCount(regions=2, vertices=0, crossings=2)


def test_object_inside_costs_its_corners():
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 8:24] = 8
    counted = region_clicks(mask, 2.0)
    # the car's 4 corners, and the same corners again as the hole in the road's outline
    assert counted == ClickCount(regions=2, vertices=8, crossings=0)
    assert counted.total == 10


def test_uniform_sample_costs_one_click():
    assert region_clicks(np.full((16, 16), 5, np.uint8), 2.0).total == 1


def test_two_separate_blobs_of_one_class_are_two_regions():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 1
    mask[12:16, 12:16] = 1
    counted = region_clicks(mask, 1.0)
    assert counted.regions == 3
    assert counted.vertices == 16  # 2 blobs × 4 corners, drawn by the blob and by the hole


def test_void_is_not_charged_as_a_region():
    mask = np.full((10, 10), VOID, np.uint8)
    mask[:, :5] = 2
    counted = region_clicks(mask, 2.0)
    assert counted.regions == 1
    assert counted.crossings == 2


def test_tolerance_simplifies_a_jagged_outline():
    mask = np.zeros((40, 40), np.uint8)
    yy, xx = np.mgrid[0:40, 0:40]
    mask[(yy - 20) ** 2 + (xx - 20) ** 2 < 100] = 1
    fine = region_clicks(mask, 0.5).vertices
    coarse = region_clicks(mask, 3.0).vertices
    assert coarse < fine
    assert coarse >= 3


def test_crossings_walk_the_whole_edge():
    mask = np.zeros((8, 8), np.uint8)
    mask[0:3, 0:3] = 1  # a corner region: boundary leaves via top edge and left edge
    assert boundary_crossings(mask) == 2
    stripes = np.zeros((8, 8), np.uint8)
    stripes[:, 2:4] = 1
    stripes[:, 6:] = 2
    assert boundary_crossings(stripes) == 6


def test_dominant_label_ignores_void():
    values = np.array([VOID, VOID, VOID, 2, 2, 1], np.uint8)
    assert dominant_label(values) == 2
    assert dominant_label(np.array([VOID], np.uint8)) == VOID
