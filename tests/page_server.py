"""A scripted server for the annotation page: the page's files from the package, one sample.

Used by tests/test_app_page.py (tiny generated frames) and docs/screenshots.py (a CamVid frame
with hvsa's labels as the prefill). Playwright routes every request of ``HOST`` here, so no
socket is opened.
"""

import json

import cv2
import numpy as np

from hvsa.app.server import STATIC

HOST = "http://hvsa.test"


def png(array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", array)
    assert ok
    return data.tobytes()


class PageServer:
    """Answers the page's requests for open rounds of video ``cam`` (``rounds``: their numbers,
    the longest waiting first; default round 1 only), each of one whole-frame sample.

    ``frame`` RGB (H, W, 3); ``prefill`` class ids (255 void); ``classes`` [{name, color}];
    ``superpixels`` ids < 65536 (default: one)."""

    def __init__(self, frame, prefill, classes, superpixels=None, holds=None, rounds=(1,)):
        h, w = prefill.shape
        self.size, self.classes, self.rounds = (h, w), classes, list(rounds)
        self.handed_in: dict | None = None  # the last hand-in
        self.handed_rounds: list[int] = []  # the rounds handed in, in order
        self.drafts: list[dict] = []
        # an admin's view: the samples others hold (signed in as an admin when given)
        self.holds: list[dict] | None = holds
        self.released: list[str] = []
        sp = np.zeros((h, w), np.int32) if superpixels is None else superpixels
        sp_png = np.zeros((h, w, 3), np.uint8)  # BGR: the page reads R + 256 G
        sp_png[..., 2], sp_png[..., 1] = sp % 256, sp // 256
        self.files = {
            "/frames/0.png": png(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)),
            "/samples/0/region.png": png(np.full((h, w, 3), 255, np.uint8)),
            "/samples/0/prefill.png": png(np.repeat(prefill[..., None], 3, axis=2)),
            "/samples/0/superpixels.png": png(sp_png),
        }

    def handle(self, route):
        request = route.request
        path = request.url.removeprefix(HOST)
        if path == "/" or path.startswith("/static/"):
            file = STATIC / ("index.html" if path == "/" else path.removeprefix("/static/"))
            kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
            return route.fulfill(body=file.read_bytes(), content_type=kind[file.suffix])
        n = self._round_of(path)
        base = f"/api/rounds/cam/{n}"
        if n is not None and path.removeprefix(base) in self.files:
            return route.fulfill(body=self.files[path.removeprefix(base)], content_type="image/png")
        if path == base + "/samples/0/draft":
            if request.method == "PUT":
                self.drafts.append(json.loads(request.post_data))
                return self._json(route, {"saved": True})
            return self._json(route, {"error": "no draft"}, 404)
        if path == base + "/samples/0" and request.method == "POST":
            self.handed_in = json.loads(request.post_data)
            self.handed_rounds.append(n)
            return self._json(route, {"accepted": 0, "clicks": 1, "round_complete": True})
        if path.startswith("/api/admin/release/") and request.method == "POST":
            self.released.append(path.removeprefix("/api/admin/release/"))
            held_by = self.holds.pop(0)["annotator"]
            return self._json(route, {"released": 0, "held_by": held_by})
        waiting = [r for r in self.rounds if r not in self.handed_rounds]
        none = {"sample_id": None, "message": "no round is waiting for labels"}
        answers = {
            "/api/me": {"annotator": "alice", "admin": self.holds is not None},
            "/api/admin/holds": self.holds,
            "/api/rounds": [
                {
                    "video": "cam",
                    "round": r,
                    "granularity": "frame",
                    "samples": 1,
                    "submitted": 0,
                    "held": 0,
                }
                for r in waiting
            ],  # fmt: skip
            "/api/next": self._sample(waiting[0]) if waiting else none,
            base + "/classes": self.classes,
            base + "/next": self._sample(n) if n in waiting else none,
        }
        return self._json(route, answers[path])

    def _round_of(self, path: str) -> int | None:
        for r in self.rounds:
            if path.startswith(f"/api/rounds/cam/{r}/"):
                return r
        return None

    def _sample(self, round_no: int) -> dict:
        h, w = self.size
        return {"video": "cam", "round": round_no, "sample_id": 0, "rank": 0, "of": 1,
                "granularity": "frame", "layer": None, "frame": 0, "frame_name": "0",
                "frames": 1, "size": [h, w], "box": {"y0": 0, "y1": h, "x0": 0, "x1": w},
                "region_pixels": h * w}  # fmt: skip

    @staticmethod
    def _json(route, body, status=200):
        return route.fulfill(status=status, body=json.dumps(body), content_type="application/json")


def open_sample(playwright, server: PageServer, chromium: str, args: list[str], viewport: dict):
    """A browser on the page, signed in, with the sample open; (browser, page)."""
    browser = playwright.chromium.launch(executable_path=chromium, args=args)
    page = browser.new_page(viewport=viewport)
    page.route(HOST + "/**", server.handle)
    page.goto(HOST + "/")
    page.fill("#token", "t")
    page.click("#signin")
    page.click(".round[data-video='cam'][data-round='1'] button")
    page.wait_for_function("S.sample && S.frameImages.size > 0")
    return browser, page
