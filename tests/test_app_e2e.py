"""End to end in headless Chromium: a human round labelled in the browser resumes the campaign.

The campaign flow runs for real (Prefect test API), pauses for round 1's labels; the app is served
on localhost; Playwright drives Debian's Chromium through the page: sign in, a polygon and a
superpixel fill on the first sample, a region of the prefill reassigned on the second (priced
as the correction click model prices that fix), the third accepted as pre-filled. Then the flow
must resume, the ledger must hold exactly the clicks the page made, and round 2 must appear.
"""

import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from hvsa.annotation.ledger import Ledger
from hvsa.app.resume import paused_run_of
from hvsa.app.server import create_app
from hvsa.app.store import app_store
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.workspace import Workspace
from tests.conftest import free_port, start_flow, write_fast_params

pytestmark = pytest.mark.slow  # a browser, a Prefect API and a campaign flow

CHROMIUM = "/usr/bin/chromium"
WAIT_S = 300
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _wait(what, check, timeout=WAIT_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def _app_on_localhost(root):
    """The app of workspace ``root`` served on a free local port; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(root), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _serving(prefect_api, tiny_videos, pretrained, tmp_path, monkeypatch, **settings):
    """A human campaign flow of 2 rounds, and the app serving its workspace on localhost."""
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")

    # the app's request threads do not see the test harness's settings context: use the env
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    params = write_fast_params(
        tmp_path / "params.yaml",
        **{"annotation.annotator": "human", "annotation.poll_s": 1, **settings},
    )
    ws = init_workspace(
        tmp_path / "ws", "browser", pretrained, {"cam": str(tiny_videos[0])}, params
    )
    token = app_store(Workspace.open(ws.root)).add_annotator("alice")
    flow = start_flow(ws.root, prefect_api, 2)
    try:
        with _app_on_localhost(ws.root) as url:
            yield ws.root, token, url, flow, prefect_api
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.communicate()


@pytest.fixture
def served(prefect_api, tiny_videos, pretrained, tmp_path, monkeypatch):
    """A campaign flow paused for human labels on 16 px rectangles, and the app serving it."""
    settings = {"loop.budget": 3, "samples.granularity": "rect"}
    with _serving(prefect_api, tiny_videos, pretrained, tmp_path, monkeypatch, **settings) as s:
        yield s


@pytest.fixture
def served_layers(prefect_api, tiny_videos, pretrained, tmp_path, monkeypatch):
    """The same with two whole frames in round 1, then class layers."""
    settings = {"loop.budget": 2, "samples.granularity": "frame", "layers.enabled": True,
                "layers.per_round": 3, "fusion.calibration_probes": 2}  # fmt: skip
    with _serving(prefect_api, tiny_videos, pretrained, tmp_path, monkeypatch, **settings) as s:
        yield s


def _signed_in(p, url, token):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    # the test drives the page with evaluated snippets, which the app's CSP forbids; the CSP
    # header is checked in test_app_api, and here the page must be safe without it
    page = browser.new_page(viewport={"width": 1500, "height": 1100}, bypass_csp=True)
    page.goto(url)
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_selector("#who:has-text('alice')")
    return browser, page


def _open(page, round_no):
    page.click(f".round[data-video='cam'][data-round='{round_no}'] button")
    page.wait_for_selector("#work:not([hidden])")
    page.wait_for_function("S.sample && S.frameImages.size > 0")


def _at(page, x, y):
    """Page coordinates of box pixel (x, y) of the sample on screen."""
    return page.evaluate(f"toScreen({x}, {y})")


def _reassign_a_region(page) -> tuple[int, int]:
    """On the sample shown: the reassign tool gives the prefill's largest region another class.
    The sample's id, and the correction click model's price of going from the prefill to the
    labels the page now holds (nothing left: every wrong pixel counts)."""
    import cv2
    import numpy as np

    from hvsa.method.corrections import correct

    box = page.evaluate("S.sample.box")
    h, w = box["y1"] - box["y0"], box["x1"] - box["x0"]
    prefill = np.array(page.evaluate("Array.from(S.prefill)"), np.uint8).reshape(h, w)
    region = np.array(page.evaluate("Array.from(S.region)"), bool).reshape(h, w)
    best = (0, 0, 0)  # pixels, y, x of the largest region of the prefill
    for cls in np.unique(prefill[region]):
        n, comp, stats, _ = cv2.connectedComponentsWithStats(
            ((prefill == cls) & region).astype(np.uint8), None, 8
        )
        for c in range(1, n):
            ys, xs = np.nonzero(comp == c)
            if stats[c, cv2.CC_STAT_AREA] > best[0]:
                best = (stats[c, cv2.CC_STAT_AREA], ys[len(ys) // 2], xs[len(xs) // 2])
    _, y, x = best
    other = next(k for k in range(7) if k != prefill[y, x])
    page.click(f"#class-{other}")
    page.keyboard.press("r")
    page.mouse.click(*_at(page, x + 0.5, y + 0.5))
    assert page.locator("#clicks").get_attribute("data-total") == "1"
    handed = np.array(page.evaluate("Array.from(S.labels)"), np.uint8).reshape(h, w)
    assert (handed[prefill != handed] == other).all() and (handed != prefill).any()
    fix = correct(prefill, handed, region, 2.0, 0, 0, 0.0, scratch=False)
    return page.evaluate("S.sample.sample_id"), fix.total


def _press_on_each_sample(page, what):
    """``what`` (a button) on the sample shown, until the page moves to the next one."""
    sid = page.evaluate("S.sample.sample_id")
    page.click(what)
    page.wait_for_function(f"!S.sample || S.sample.sample_id !== {sid}")


def test_a_round_labelled_in_the_browser_resumes_the_flow(served, tmp_path):
    from playwright.sync_api import sync_playwright

    root, token, url, flow, api = served
    _wait("the flow to pause for round 1", lambda: paused_run_of(root) or flow.poll() is not None)
    assert flow.poll() is None, flow.communicate()[0][-3000:]
    first_pause = paused_run_of(root).id

    with sync_playwright() as p:
        browser, page = _signed_in(p, url, token)
        _open(page, 1)

        def at(x, y):
            return _at(page, x, y)

        # sample 1: a polygon of class 2 over the left half, then a superpixel fill of class 3
        page.click("#class-1")
        drawn_classes = page.evaluate("[S.classes[1].name, S.classes[3].name]")
        page.click("#tool-polygon")
        box = page.evaluate("S.sample.box")
        w, h = box["x1"] - box["x0"], box["y1"] - box["y0"]
        for x, y in [(0.5, 0.5), (w / 2, 0.5), (w / 2, h - 0.5), (0.5, h - 0.5), (0.5, 0.5)]:
            page.mouse.click(*at(x, y))
        labels = page.evaluate("Array.from(S.labels)")
        inside = [w * 2 + 2, w * (h - 3) + w // 2 - 2]  # pixels well inside the polygon
        assert [labels[i] for i in inside] == [1, 1], "the polygon did not close and fill"
        assert page.evaluate("S.polygon.length") == 0
        page.keyboard.press("4")  # class 4 (id 3) by its shortcut
        page.keyboard.press("s")
        page.mouse.click(*at(w - 2, h - 2))
        assert page.locator("#clicks").get_attribute("data-total") == "6"
        # the page autosaves: reloaded (or closed and opened again), it goes on where it was
        drawn = page.evaluate("Array.from(S.labels)")
        page.wait_for_selector("#saved:has-text('saved ')", timeout=15000)
        page.reload()
        page.wait_for_selector("#who:has-text('alice')")
        _open(page, 1)
        page.wait_for_function("Object.keys(S.clicks).length > 0", timeout=15000)
        assert page.evaluate("Array.from(S.labels)") == drawn
        assert page.locator("#clicks").get_attribute("data-total") == "6"
        shot = tmp_path / "annotate.png"
        page.screenshot(path=str(shot))
        if os.environ.get("HVSA_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["HVSA_SCREENSHOT"])
        first = page.evaluate("S.sample.sample_id")
        page.click("#accept")
        page.wait_for_function(f"S.sample && S.sample.sample_id !== {first}")
        # the second: one region of the prefill given another class, then handed in
        fixed, model_price = _reassign_a_region(page)
        _press_on_each_sample(page, "#accept")
        # the third: the prefilled labels accepted as they are (one click)
        _press_on_each_sample(page, "#accept")
        page.wait_for_selector("#idle-text:has-text('Round handed in')")

        # the flow resumes, records round 1, and pauses again for round 2, which the page lists
        _wait("the flow to pause for round 2", lambda: flow.poll() is not None or (
            (run := paused_run_of(root)) is not None and run.id == first_pause
            and (root / "data" / "cam" / "r2" / "selected.parquet").is_file()))  # fmt: skip
        assert flow.poll() is None, flow.communicate()[0][-3000:]

        def round_two_listed():
            page.click("#refresh")
            return page.locator(".round[data-video='cam'][data-round='2']").count() == 1

        _wait("round 2 on the page", round_two_listed, 60)
        browser.close()

    with Ledger(Workspace.open(root).ledger_path) as ledger:
        events = ledger.frame()
    assert len(events) == 3 and set(events["annotator"]) == {"alice"}
    by_sample = events.set_index("sample_id")
    assert by_sample.loc[first, "clicks"] == 7  # 5 vertices and the closing click, a fill, hand-in
    assert by_sample.loc[first, "clicks_detail"]["polygon"] == 5
    assert by_sample.loc[first, "clicks_detail"]["superpixel"] == 1
    assert by_sample.loc[first, "clicks_detail"]["accept"] == 1
    # accepting after edits hands the edits in: the polygon's and the fill's classes are there
    assert set(drawn_classes) <= set(by_sample.loc[first, "class_pixels"])
    # the page's price of the fix is the correction click model's for the same fix
    assert by_sample.loc[fixed, "clicks"] == model_price == 2
    assert by_sample.loc[fixed, "clicks_detail"]["reassign"] == 1
    last = by_sample.drop(index=[first, fixed])
    assert last["clicks"].tolist() == [1] and set(last["tool"]) == {"accept"}


def test_class_layers_drawn_and_marked_absent_in_the_browser(served_layers):
    """Round 1: two whole frames accepted as prefilled; round 2: three class layers — one
    outlined with the polygon, one marked absent, one accepted — and the ledger holds the
    page's counts."""
    from playwright.sync_api import sync_playwright

    root, token, url, flow, _ = served_layers
    _wait("the flow to pause for round 1", lambda: paused_run_of(root) or flow.poll() is not None)
    with sync_playwright() as p:
        browser, page = _signed_in(p, url, token)
        _open(page, 1)
        for _ in range(2):
            _press_on_each_sample(page, "#accept")
        page.wait_for_selector("#idle-text:has-text('Round handed in')")
        _wait("the flow to pause for round 2", lambda: flow.poll() is not None or (
            paused_run_of(root) is not None
            and (root / "data" / "cam" / "r2" / "selected.parquet").is_file()))  # fmt: skip
        assert flow.poll() is None, flow.communicate()[0][-3000:]
        _wait("round 2 on the page", lambda: page.click("#refresh") or page.locator(
            ".round[data-video='cam'][data-round='2']").count() == 1, 60)  # fmt: skip
        _open(page, 2)

        # layer 1: the class is locked; outline a square of it with the polygon
        layer = page.evaluate("S.sample.layer")
        assert layer is not None and page.locator("#absent").is_visible()
        assert f"draw every {layer['class_name']}" in page.inner_text("#sample-info")
        others = [i for i in range(7) if i != layer["class_id"]]
        assert page.locator(f"#class-{others[0]}").is_disabled()
        page.click("#tool-polygon")
        for x, y in [(10.5, 10.5), (30.5, 10.5), (30.5, 30.5), (10.5, 30.5), (10.5, 10.5)]:
            page.mouse.click(*_at(page, x, y))
        labels = page.evaluate("Array.from(S.labels)")
        w = page.evaluate("S.sample.box.x1 - S.sample.box.x0")
        assert labels[20 * w + 20] == layer["class_id"], "the polygon filled the layer's class"
        assert page.locator("#clicks").get_attribute("data-total") == "5"
        _press_on_each_sample(page, "#accept")
        # layer 2: absent, one key; layer 3: the prefill of its class accepted
        sid = page.evaluate("S.sample.sample_id")
        page.keyboard.press("x")
        page.wait_for_function(f"!S.sample || S.sample.sample_id !== {sid}")
        _press_on_each_sample(page, "#accept")
        page.wait_for_selector("#idle-text:has-text('Round handed in')")
        browser.close()
    output, _ = flow.communicate(timeout=WAIT_S)
    assert flow.returncode == 0, output[-3000:]

    with Ledger(Workspace.open(root).ledger_path) as ledger:
        events = ledger.frame(round=2)
    assert len(events) == 3 and set(events["annotator"]) == {"alice"}
    assert (events["geometry"].map(lambda g: g["kind"]) == "layer").all()
    assert events["clicks"].tolist() == [6, 1, 1]  # the polygon's 5 and the hand-in
    assert events["tool"].tolist() == ["polygon", "absent", "accept"]
    assert events["clicks_detail"].iloc[0]["polygon"] == 5
    assert sum(events["class_pixels"].iloc[1].values()) == 0, "absent: no pixel of it"


HOSTILE = '<img src=x onerror="window.__pwned=1">'


def test_a_hostile_class_name_is_shown_as_text(tiny_videos, pretrained, tmp_path):
    """A class named like HTML (from a hostile classes.json) is a button's text and runs
    nothing, even with the page's CSP bypassed (which would refuse the inline handler)."""
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    import json

    import torch
    from playwright.sync_api import sync_playwright

    from hvsa.campaign.lifecycle import advance
    from hvsa.campaign.versioning import reproduce

    state = torch.load(pretrained, weights_only=False)
    state["classes"][0]["name"] = HOSTILE
    model = tmp_path / "hostile.pt"
    torch.save(state, model)
    video = tmp_path / "video"
    shutil.copytree(tiny_videos[0], video)
    spec = json.loads((video / "classes.json").read_text())
    spec["classes"][0]["name"] = HOSTILE
    (video / "classes.json").write_text(json.dumps(spec))
    params = write_fast_params(tmp_path / "params.yaml", **{"annotation.annotator": "human",
                               "loop.budget": 1, "samples.granularity": "rect"})  # fmt: skip
    ws = init_workspace(tmp_path / "ws", "hostile", model, {"cam": str(video)}, params)
    advance(ws)
    reproduce(Workspace.open(ws.root), ["select@cam"])
    token = app_store(Workspace.open(ws.root)).add_annotator("alice")
    with _app_on_localhost(ws.root) as url, sync_playwright() as p:
        browser, page = _signed_in(p, url, token)
        _open(page, 1)
        assert page.locator("#class-0").inner_text().strip() == HOSTILE
        assert page.locator("#classes img").count() == 0
        assert page.evaluate("window.__pwned") is None
        browser.close()
