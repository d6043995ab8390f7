"""The annotation page's screenshots in docs/: a real frame, hvsa's labels of it as the prefill.

Serves the page from the package through tests/page_server.py (no socket, no campaign) in
headless Chromium, draws a polygon, opens it for vertex editing, and writes two screenshots:
the labels filled at the default opacity with the polygon's vertex handles, and the same in
outline mode with the class under the cursor read out.

    .venv/bin/python docs/screenshots.py \\
        ../shared/datasets/camvid/clips/0016E5_15hz/frames/07991.png \\
        runs/bn_15hz/round_02/labels/07991.png ../shared/datasets/camvid/classes.json docs/

CamVid (Brostow, Fauqueur, Cipolla, Pattern Recognition Letters 2009) is CC BY-NC 4.0: the
screenshots are figures made with it, credited where they are shown; no frame is kept here.
"""

import argparse
import json
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.page_server import PageServer, open_sample  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frame", type=Path)
    parser.add_argument("labels", type=Path, help="class-index PNG (the prefill)")
    parser.add_argument("classes", type=Path, help="classes.json")
    parser.add_argument("out", type=Path)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    a = parser.parse_args()
    from playwright.sync_api import sync_playwright

    frame = cv2.cvtColor(cv2.imread(str(a.frame)), cv2.COLOR_BGR2RGB)
    spec = json.loads(a.classes.read_text())
    labels = cv2.imread(str(a.labels), cv2.IMREAD_UNCHANGED)
    labels[labels == spec["void"]] = 255
    classes = [{"name": c["name"], "color": c["color"]} for c in spec["classes"]]
    server = PageServer(frame, labels, classes)
    with sync_playwright() as p:
        browser, page = open_sample(p, server, a.chromium, ARGS, {"width": 1500, "height": 900})
        car = next(i for i, c in enumerate(classes) if c["name"] == "car")
        page.click(f"#class-{car}")
        page.keyboard.press("p")
        for x, y in [(274, 182), (298, 172), (323, 184), (323, 210), (278, 210), (274, 182)]:
            page.mouse.click(*page.evaluate(f"toScreen({x}, {y})"))
        page.keyboard.press("v")
        page.mouse.move(*page.evaluate("toScreen(200, 100)"))
        page.screenshot(path=str(a.out / "annotate.png"))
        page.keyboard.press("o")
        page.mouse.move(*page.evaluate("toScreen(120, 300)"))
        page.screenshot(path=str(a.out / "annotate-outlines.png"))
        browser.close()
    print(f"wrote {a.out / 'annotate.png'} and {a.out / 'annotate-outlines.png'}")


if __name__ == "__main__":
    main()
