"""End to end in headless Chromium: a human round labelled in the browser resumes the campaign.

The campaign flow runs for real (Prefect test API), pauses for round 1's labels; the app is served
on localhost; Playwright drives Debian's Chromium through the page: sign in, a polygon and a
superpixel fill on the first sample, "accept prediction" on the others. Then the flow must
resume, the ledger must hold exactly the clicks the page made, and round 2 must appear.
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from hvsa.annotation.ledger import Ledger
from hvsa.app.resume import paused_run_of
from hvsa.app.server import create_app
from hvsa.app.store import app_store
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.workspace import Workspace
from tests.conftest import start_flow, write_fast_params

pytestmark = pytest.mark.slow  # a browser, a Prefect API and a campaign flow

CHROMIUM = "/usr/bin/chromium"
WAIT_S = 300
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what, check, timeout=WAIT_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served(prefect_api, tiny_videos, pretrained, tmp_path, monkeypatch):
    """A campaign flow paused for human labels, and the app serving its workspace."""
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    import uvicorn

    # the app's request threads do not see the test harness's settings context: use the env
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    params = write_fast_params(
        tmp_path / "params.yaml",
        **{"annotation.annotator": "human", "annotation.poll_s": 1, "loop.budget": 3,
           "samples.granularity": "rect"},
    )  # fmt: skip
    ws = init_workspace(
        tmp_path / "ws", "browser", pretrained, {"cam": str(tiny_videos[0])}, params
    )
    token = app_store(Workspace.open(ws.root)).add_annotator("alice")
    flow = start_flow(ws.root, prefect_api, 2)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ws.root), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield ws.root, token, f"http://127.0.0.1:{port}/", flow, prefect_api
    finally:
        server.should_exit = True
        thread.join(10)
        if flow.poll() is None:
            flow.kill()
            flow.communicate()


def test_a_round_labelled_in_the_browser_resumes_the_flow(served, tmp_path):
    from playwright.sync_api import sync_playwright

    root, token, url, flow, api = served
    _wait("the flow to pause for round 1", lambda: paused_run_of(root) or flow.poll() is not None)
    assert flow.poll() is None, flow.communicate()[0][-3000:]
    first_pause = paused_run_of(root).id

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_selector("#who:has-text('alice')")
        page.click(".round[data-video='cam'][data-round='1'] button")
        page.wait_for_selector("#work:not([hidden])")
        page.wait_for_function("S.sample && S.frameImages.size > 0")

        def at(x, y):
            """Page coordinates of box pixel (x, y) of the sample on screen."""
            v = page.evaluate("({v: S.view, s: scale(), b: S.sample.box})")
            r = page.locator("#canvas").bounding_box()
            s, b = v["s"], v["b"]
            return r["x"] + (b["x0"] - v["v"]["x"] + x) * s, r["y"] + (
                b["y0"] - v["v"]["y"] + y
            ) * s

        # sample 1: a polygon of class 2 over the left half, then a superpixel fill of class 3
        page.click("#class-1")
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
        shot = tmp_path / "annotate.png"
        page.screenshot(path=str(shot))
        if os.environ.get("HVSA_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["HVSA_SCREENSHOT"])
        first = page.evaluate("S.sample.sample_id")
        page.click("#submit")
        page.wait_for_function(f"S.sample && S.sample.sample_id !== {first}")
        # the others: the network's prediction accepted as is (one click each)
        for _ in range(2):
            sid = page.evaluate("S.sample.sample_id")
            page.click("#accept")
            page.wait_for_function(f"!S.sample || S.sample.sample_id !== {sid}")
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
    assert by_sample.loc[first, "clicks"] == 6
    assert by_sample.loc[first, "clicks_detail"]["polygon"] == 5
    assert by_sample.loc[first, "clicks_detail"]["superpixel"] == 1
    others = by_sample.drop(index=first)
    assert others["clicks"].tolist() == [1, 1] and set(others["tool"]) == {"accept"}
