"""The annotation page's drawing layer in headless Chromium, against a scripted server.

The page (index.html, app.js and the Konva it ships) is served as it is; every /api request is
answered by the test (one 60×80 frame sample, a prefill of three bands), so each tool is checked
in seconds: vertex editing after a polygon is closed, the cut and reassign that split a region,
the last vertex taken back while drawing, brush and eraser strokes, zoom at the cursor, space-drag
pan, the class under the cursor, the brush's cursor circle, overlay opacity and outline mode, and
an admin releasing a held sample. The campaign end to end (ledger against the correction click
model, autosave across a reload) is tests/test_app_e2e.py; the server's side of each request is
tests/test_app_api.py.
"""

import base64
import os
from pathlib import Path

import numpy as np
import pytest

from hvsa.app.server import KONVA
from tests.page_server import PageServer, open_sample

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
H, W = 60, 80
CLASSES = [{"name": "road", "color": [128, 64, 128]}, {"name": "car", "color": [64, 0, 128]},
           {"name": "sky", "color": [128, 128, 128]}]  # fmt: skip


def _prefill() -> np.ndarray:
    """Sky over road over car: three horizontal bands, each one region."""
    labels = np.zeros((H, W), np.uint8)
    labels[: H // 3] = 2
    labels[2 * H // 3 :] = 1
    return labels


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    assert KONVA.is_file(), "the install did not vendor Konva (setup.py needs npm)"
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is not installed")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (H, W, 3), np.uint8)
    superpixels = np.zeros((H, W), np.int32)
    superpixels[:, W // 2 :] = 1
    server = PageServer(frame, _prefill(), CLASSES, superpixels)
    with sync_playwright() as p:
        browser, page = open_sample(p, server, CHROMIUM, ARGS, {"width": 1400, "height": 1000})
        page.server = server
        yield page
        browser.close()


def test_brush_and_eraser_paint_inside_the_sample_and_count_strokes(page):
    page.keyboard.press("2")  # car
    page.keyboard.press("b")
    page.evaluate("document.getElementById('brush-size').value = 4")
    page.mouse.move(*_at(page, 10, 30))
    page.mouse.down()
    page.mouse.move(*_at(page, 50, 30), steps=8)
    page.mouse.up()
    labels = _labels(page)
    assert (labels[29:31, 12:48] == 1).all() and (labels[36, 12:48] == 0).all()
    page.keyboard.press("e")
    page.mouse.click(*_at(page, 30, 30))
    assert _labels(page)[30, 30] == 255  # erased: unlabelled
    page.keyboard.press("Control+z")
    assert _labels(page)[30, 30] == 1
    assert _clicks(page) == {"brush": 1, "eraser": 1}


def test_an_admin_releases_a_held_sample_from_the_page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    holds = [{"annotator": "bob", "video": "cam", "round": 1, "sample_id": 0, "saved": None,
              "lease_left_s": 1500}]  # fmt: skip
    server = PageServer(np.zeros((H, W, 3), np.uint8), _prefill(), CLASSES, holds=holds)
    with sync_playwright() as p:
        browser, page = open_sample(p, server, CHROMIUM, ARGS, {"width": 1400, "height": 1000})
        assert page.locator("#who").inner_text() == "signed in as alice (admin)"
        hold = page.locator("#holds li.hold")
        assert "bob" in hold.inner_text() and "25 min left" in hold.inner_text()
        hold.locator("button").click()
        page.wait_for_selector("#holds li.muted:has-text('nobody holds a sample')")
        assert server.released == ["cam/1/0"]
        assert "released (held by bob)" in page.locator("#message").inner_text()
        browser.close()


def test_a_finished_round_goes_on_to_the_longest_waiting_one():
    """Two rounds wait: handing in the first, the page opens the other by itself, and with
    none left it says so."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    server = PageServer(np.zeros((H, W, 3), np.uint8), _prefill(), CLASSES, rounds=(1, 2))
    with sync_playwright() as p:
        browser, page = open_sample(p, server, CHROMIUM, ARGS, {"width": 1400, "height": 1000})
        assert page.evaluate("[S.round.video, S.round.round]") == ["cam", 1]
        page.click("#accept")
        page.wait_for_function("S.sample && S.sample.round === 2 && S.frameImages.size > 0")
        assert server.handed_rounds == [1]
        assert "on to cam round 2" in page.locator("#message").inner_text()
        assert "round 2" in page.locator("#sample-info").inner_text()
        page.click("#accept")
        page.wait_for_function("S.sample === null")
        assert server.handed_rounds == [1, 2]
        assert "Round handed in" in page.locator("#idle-text").inner_text()
        browser.close()


def _at(page, x, y):
    return page.evaluate(f"toScreen({x}, {y})")


def _labels(page) -> np.ndarray:
    return np.array(page.evaluate("Array.from(S.labels)"), np.uint8).reshape(H, W)


def _clicks(page) -> dict:
    return page.evaluate("S.clicks")


def test_a_closed_polygon_keeps_editable_vertices(page):
    page.keyboard.press("2")  # car
    page.keyboard.press("p")
    square = [(10, 10), (30, 10), (30, 30), (10, 30)]
    for x, y in square:
        page.mouse.click(*_at(page, x, y))
    page.mouse.click(*_at(page, 50, 50))  # a stray vertex, taken back while drawing
    page.keyboard.press("Control+z")
    assert page.evaluate("S.polygon.length") == 4
    page.mouse.click(*_at(page, 10, 10))  # on the first vertex: closes
    drawn = _labels(page)
    assert (drawn[12:28, 12:28] == 1).all() and (drawn[32:38, 12:28] != 1).all()

    page.keyboard.press("v")
    assert page.evaluate("S.k.shapes.find('Circle').length") == 4
    # drag the corner at (30, 30) to (30, 45): the square's lower right grows down
    page.mouse.move(*_at(page, 30, 30))
    page.mouse.down()
    page.mouse.move(*_at(page, 30, 38), steps=4)
    page.mouse.move(*_at(page, 30, 45), steps=4)
    page.mouse.up()
    moved = _labels(page)
    assert page.evaluate("S.ops[0].points[2]") == pytest.approx([30, 45], abs=0.6)
    assert moved[36, 27] == 1 and drawn[36, 27] == 0  # road inside the new triangle is car
    # a click on the top edge inserts a vertex there; dragged up, the top bulges
    page.mouse.click(*_at(page, 20, 10))
    assert page.evaluate("S.ops[0].points.length") == 5
    page.mouse.move(*_at(page, 20, 10))
    page.mouse.down()
    page.mouse.move(*_at(page, 20, 3), steps=4)
    page.mouse.up()
    assert _labels(page)[6, 20] == 1
    # a right click on that vertex deletes it: the top is straight again
    page.mouse.click(*_at(page, 20, 3), button="right")
    assert page.evaluate("S.ops[0].points.length") == 4
    assert _labels(page)[6, 20] != 1
    # undo takes back the deletion; the edits were clicks the page counts
    page.keyboard.press("Control+z")
    assert _labels(page)[6, 20] == 1
    assert _clicks(page) == {"polygon": 6, "edit": 4}
    page.click("#accept")
    page.wait_for_function("S.sample === null")
    handed = page.server.handed_in
    assert handed["clicks_by_tool"] == {"polygon": 6, "edit": 4, "accept": 1}
    labels = np.frombuffer(base64.b64decode(handed["labels"]), np.uint8).reshape(H, W)
    assert (labels == _prefill_with_car(labels)).all()


def _prefill_with_car(handed: np.ndarray) -> np.ndarray:
    """The prefill where the hand-in is not car: nothing but the polygon changed."""
    expected = _prefill()
    expected[handed == 1] = 1
    return expected


def test_a_cut_splits_a_region_that_reassign_then_recolours_on_one_side(page):
    page.keyboard.press("c")
    page.mouse.click(*_at(page, 40.5, 15))  # down column 40, through the road band (rows 20-39)
    page.mouse.click(*_at(page, 40.5, 45))
    page.keyboard.press("Enter")
    assert page.evaluate("S.polygon.length") == 0
    page.keyboard.press("3")  # sky
    page.keyboard.press("r")
    page.mouse.click(*_at(page, 20.5, 30.5))
    labels = _labels(page)
    road = _prefill() == 0
    assert (labels[road & (np.arange(W) < 40)[None, :]] == 2).all()
    assert (labels[road & (np.arange(W) > 40)[None, :]] == 0).all()
    assert _clicks(page) == {"cut": 2, "reassign": 1}
    # a click on the cut itself is refused, not a region
    page.mouse.click(*_at(page, 40.5, 30.5))
    assert _clicks(page) == {"cut": 2, "reassign": 1}


def test_zoom_at_the_cursor_space_drag_pan_and_what_the_cursor_shows(page):
    # the class under the cursor, by name
    page.mouse.move(*_at(page, 5.5, 5.5))
    assert page.locator("#readout").inner_text() == "sky"
    page.mouse.move(*_at(page, 5.5, 50.5))
    assert page.locator("#readout").inner_text() == "car"
    # the wheel zooms about the cursor: the pixel under it stays under it
    before = _at(page, 25, 20)
    page.mouse.move(*before)
    page.mouse.wheel(0, -100)
    page.wait_for_function("S.zoom > 1")
    after = _at(page, 25, 20)
    assert after == pytest.approx(before, abs=1.0)
    assert page.evaluate("S.zoom") == pytest.approx(1.25)
    # space held, a drag moves the view by as much as the mouse moved
    page.keyboard.down(" ")
    page.mouse.down()
    page.mouse.move(before[0] + 60, before[1] + 30, steps=5)
    page.mouse.up()
    page.keyboard.up(" ")
    panned = _at(page, 25, 20)
    assert panned == pytest.approx([before[0] + 60, before[1] + 30], abs=1.5)
    assert _clicks(page) == {}, "panning is not drawing"
    # the brush shows its size as a circle at the cursor
    page.keyboard.press("b")
    page.mouse.move(*_at(page, 30, 30))
    circle = page.evaluate("({v: S.k.cursor.visible(), r: S.k.cursor.radius(), "
                           "x: S.k.cursor.x(), y: S.k.cursor.y()})")  # fmt: skip
    size = page.evaluate("Number(document.getElementById('brush-size').value)")
    assert circle["v"] and circle["r"] == size / 2
    assert (circle["x"], circle["y"]) == pytest.approx((30, 30), abs=0.6)
    # overlay opacity, and outlines: inside a region transparent, its border opaque
    page.evaluate(
        "(() => { const o = document.getElementById('opacity'); o.value = 20;"
        " o.dispatchEvent(new Event('input')); })()"
    )
    assert page.evaluate("S.k.labels.opacity()") == pytest.approx(0.2)
    page.keyboard.press("o")
    alpha = page.evaluate(
        "(() => { const g = S.k.labels.image().getContext('2d');"
        " return [g.getImageData(40, 30, 1, 1).data[3], g.getImageData(40, 20, 1, 1).data[3]]; })()"
    )
    assert alpha == [0, 255]
