"""The annotation web app: a FastAPI server over a campaign workspace, plain HTML + JS in front.

Annotators sign in with their token; the app hands each one the next free sample of an open
round, takes the labels back with the clicks the page counted, refuses anything that does not
fit (not their sample, already in, another round, outside the region, an unknown class), and,
when a round's last sample is in, hands the round in and resumes the paused campaign flow.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from hvsa.annotation.annotator import Annotation
from hvsa.app.resume import resume_in_background
from hvsa.app.store import RefusedError, app_store
from hvsa.app.work import TOOLS, RoundWork, open_rounds
from hvsa.campaign.workspace import Workspace
from hvsa.config import AppConfig
from hvsa.errors import HvsaError
from hvsa.method.clicks import ClickCount, region_clicks

# the page, as package data (an installed hvsa is unpacked files, so this is a real folder)
STATIC = Path(str(resources.files("hvsa.app") / "static"))
# the page's drawing library, copied from npm into the package when it is built (setup.py)
KONVA = STATIC / "vendor" / "konva.min.js"


# no page counts more than this for one sample: the bound before the click model's own
MAX_CLICKS = 100_000
# what the page's clock may be ahead of the server's, seconds
CLOCK_SKEW_S = 300
# the browser may not frame, sniff or fetch from anywhere but this server
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
     b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
     b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]  # fmt: skip


class LabelSubmission(BaseModel):
    """One sample's labels as the page hands them in: every number finite and bounded."""

    labels: str  # base64 of the box's class ids, row by row, one byte each (255 = unlabelled)
    clicks_by_tool: dict[str, int] = Field(max_length=16)
    active_s: float = Field(ge=0, allow_inf_nan=False)
    started: float = Field(gt=0, allow_inf_nan=False)
    finished: float = Field(gt=0, allow_inf_nan=False)


class Draft(BaseModel):
    """A sample's work in progress as the page autosaves it."""

    labels: str  # as in LabelSubmission
    clicks_by_tool: dict[str, int] = Field(max_length=16)
    active_s: float = Field(ge=0, allow_inf_nan=False)
    started: float = Field(gt=0, allow_inf_nan=False)


class Guard:
    """ASGI middleware in front of the app: security headers on every answer; for the API, the
    token checked and the body's size bounded *before* any of the body is read.

    FastAPI reads and parses a body before an endpoint can look at its token, so without this
    anyone could make the server hold large bodies; a body is refused (413) once it passes
    ``max_body`` bytes, declared or streamed.
    """

    def __init__(self, app, store, max_body: int):
        self.app, self.store, self.max_body = app, store, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        if not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, with_headers)
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        token = auth.removeprefix("Bearer ").strip() or None
        try:
            await anyio.to_thread.run_sync(self.store.who, token)
        except RefusedError as exc:
            return await _answer(with_headers, exc.status, str(exc))
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _answer(with_headers, 413, self._too_large())
        seen, answered = 0, False

        async def bounded():
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body and not answered:
                    # answer now and tell the app the client left, so it stops reading
                    answered = True
                    await _answer(with_headers, 413, self._too_large())
                    return {"type": "http.disconnect"}
            return message

        async def unless_answered(message):
            if not answered:
                await with_headers(message)

        try:
            await self.app(scope, bounded, unless_answered)
        except Exception:
            if not answered:
                raise

    def _too_large(self) -> str:
        return f"request body over {self.max_body / 2**20:.0f} MB (app.max_body_mb)"


async def _answer(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def create_app(
    workspace: str | Path, resume=resume_in_background, app_settings: AppConfig | None = None
) -> FastAPI:
    """The app for one workspace; ``resume`` wakes the waiting flow (replaceable in tests; by
    default sent in the background, so a hand-in's answer does not wait for Prefect);
    ``app_settings``: the ``app`` section to serve with (default: the workspace's)."""
    if not KONVA.is_file():
        raise HvsaError(
            f"the annotation page's drawing library is missing ({KONVA}): reinstall hvsa where "
            "npm can reach its registry (pip install -e . copies Konva from npm into the package)"
        )
    root = Workspace.open(workspace).root
    cfg = app_settings or Workspace.open(root).cfg.app
    store = app_store(Workspace.open(root), cfg)
    works: dict[tuple[str, int], RoundWork] = {}
    # no /docs: its page loads scripts from a CDN, and nothing here reaches another host
    app = FastAPI(title="hvsa annotation", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, store=store, max_body=int(cfg.max_body_mb * 2**20))

    @app.exception_handler(HvsaError)
    def refused(_: Request, exc: HvsaError) -> JSONResponse:
        status = exc.status if isinstance(exc, RefusedError) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """One line, like every refusal, and never the input echoed back (a NaN in it would
        make the answer itself fail)."""
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=422)

    def annotator(authorization: str | None) -> str:
        token = authorization.removeprefix("Bearer ").strip() if authorization else None
        return store.who(token)

    def round_work(ws: Workspace, video: str, round_no: int) -> RoundWork:
        if (video, round_no) not in works:
            works[(video, round_no)] = RoundWork(ws, video, round_no)
        return works[(video, round_no)]

    def work(video: str, round_no: int) -> RoundWork:
        """The round, refused unless it is open now (waiting for labels, not yet handed in)."""
        ws = Workspace.open(root)
        if (video, round_no) not in open_rounds(ws) or store.is_closed(video, round_no):
            now = ws.campaign.videos.get(video)
            where = f"the campaign is at round {now.round}" if now else "no such video"
            raise RefusedError(f"round {round_no} of {video} is not open for labels ({where})")
        return round_work(ws, video, round_no)

    def open_works() -> Iterator[RoundWork]:
        """Every round open now, the longest waiting first (:func:`open_rounds`): the
        workspace and the videos' records read once for all of them."""
        ws = Workspace.open(root)
        for video, round_no in open_rounds(ws):
            if not store.is_closed(video, round_no):
                yield round_work(ws, video, round_no)

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/me")
    def me(authorization: str | None = Header(None)) -> dict:
        who = annotator(authorization)
        return {"annotator": who, **({"admin": True} if store.is_admin(who) else {})}

    def admin(authorization: str | None) -> str:
        who = annotator(authorization)
        if not store.is_admin(who):
            raise RefusedError(f"{who} is no admin (hvsa annotate add-annotator NAME --admin)", 403)
        return who

    @app.get("/api/admin/holds")
    def holds(authorization: str | None = Header(None)) -> list[dict]:
        """Who holds which sample now, and how long each lease has left."""
        admin(authorization)
        return store.holds()

    @app.post("/api/admin/release/{video}/{round_no}/{sid}")
    def release(
        video: str, round_no: int, sid: int, authorization: str | None = Header(None)
    ) -> dict:
        """Free a held sample now, its work in progress dropped."""
        admin(authorization)
        return {"released": sid, "held_by": store.release(video, round_no, sid)}

    @app.get("/api/rounds")
    def rounds(authorization: str | None = Header(None)) -> list[dict]:
        """The open rounds, the longest waiting first (:func:`open_rounds`)."""
        annotator(authorization)
        out = []
        for w in open_works():
            held = store.assignments(w.video_key, w.round)
            out.append({
                "video": w.video_key, "round": w.round, "samples": len(w.order),
                "granularity": w.granularity,
                "submitted": sum(a.submitted is not None for a in held),
                "held": sum(a.submitted is None for a in held),
            })  # fmt: skip
        return out

    @app.post("/api/next")
    def next_anywhere(authorization: str | None = Header(None)) -> dict:
        """The next sample of any open round, the longest waiting round first: what a person
        who finished a round is given, so nobody waits while any video waits for labels."""
        who = annotator(authorization)
        for w in open_works():
            sid = store.take(w.video_key, w.round, w.order, who)
            if sid is not None:
                return w.describe(sid)
        return {"sample_id": None, "message": "no round is waiting for labels"}

    @app.get("/api/rounds/{video}/{round_no}/classes")
    def classes(video: str, round_no: int, authorization: str | None = Header(None)) -> list:
        annotator(authorization)
        return work(video, round_no).classes.to_json()

    @app.post("/api/rounds/{video}/{round_no}/next")
    def next_sample(video: str, round_no: int, authorization: str | None = Header(None)) -> dict:
        who = annotator(authorization)
        w = work(video, round_no)
        sid = store.take(video, round_no, w.order, who)
        if sid is None:
            return {"sample_id": None, "message": "every sample of this round is taken or done"}
        return w.describe(sid)

    def image(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/rounds/{video}/{round_no}/frames/{frame}.png")
    def frame_png(video: str, round_no: int, frame: int, authorization: str | None = Header(None)):
        annotator(authorization)
        return image(work(video, round_no).frame_png(frame))

    @app.get("/api/rounds/{video}/{round_no}/samples/{sid}/{layer}.png")
    def layer_png(
        video: str, round_no: int, sid: int, layer: str, authorization: str | None = Header(None)
    ) -> Response:
        annotator(authorization)
        w = work(video, round_no)
        makers = {
            "region": w.region_png,
            "prefill": w.prefill_png,
            "superpixels": w.superpixels_png,
        }
        if layer not in makers:
            raise RefusedError(f"no layer {layer!r}: region, prefill or superpixels", 404)
        return image(makers[layer](sid))

    @app.post("/api/rounds/{video}/{round_no}/samples/{sid}")
    def submit(
        video: str,
        round_no: int,
        sid: int,
        body: LabelSubmission,
        authorization: str | None = Header(None),
    ) -> dict:
        who = annotator(authorization)
        w = work(video, round_no)
        w.check_sample(sid)
        annotation = _annotation(w, sid, body, who, cfg.click_factor)
        with store.transaction() as db:
            taken = store.check_holder(db, video, round_no, sid, who)
            _check_times(body, taken, sid)
            w.save_part(annotation)
            store.mark_submitted(db, video, round_no, sid)
            complete = store.submitted(db, video, round_no) >= set(w.order)
            handed_in = complete and store.close_round(db, video, round_no)
            if handed_in:
                submission = w.hand_in()
        answer = {"accepted": sid, "clicks": annotation.clicks.total, "round_complete": complete}
        if handed_in:
            works.pop((video, round_no), None)
            rel = str(submission.relative_to(root))
            try:
                run = resume(root, video, round_no, rel)
            except Exception as exc:  # the labels are safe on disk; say how to go on
                run, answer["resume_error"] = None, f"{type(exc).__name__}: {exc}"
            answer["resumed_flow_run"] = run
            if run is None:
                answer["message"] = (
                    f"labels handed in as {rel}; no paused campaign flow was found to resume: "
                    f"resume it with video={video!r}, round={round_no}"
                )
        return answer

    @app.put("/api/rounds/{video}/{round_no}/samples/{sid}/draft")
    def save_draft(
        video: str, round_no: int, sid: int, body: Draft, authorization: str | None = Header(None)
    ) -> dict:
        """Autosave: the holder's labels and counts so far, checked as a hand-in's are."""
        who = annotator(authorization)
        w = work(video, round_no)
        w.check_sample(sid)
        _checked_counts(body.clicks_by_tool, sid)
        labels = _checked_labels(w, sid, body.labels)
        meta = {"clicks_by_tool": body.clicks_by_tool, "active_s": body.active_s,
                "started": body.started}  # fmt: skip
        saved = store.save_draft(video, round_no, sid, who, labels.tobytes(), meta)
        return {"saved": saved}

    @app.get("/api/rounds/{video}/{round_no}/samples/{sid}/draft")
    def read_draft(
        video: str, round_no: int, sid: int, authorization: str | None = Header(None)
    ) -> dict:
        """The holder's autosaved work on the sample, to go on where a closed page stopped."""
        who = annotator(authorization)
        work(video, round_no).check_sample(sid)
        found = store.draft(video, round_no, sid, who)
        if found is None:
            raise RefusedError(f"no work in progress of {who} on sample {sid}", 404)
        labels, meta, saved = found
        return {"labels": base64.b64encode(labels).decode(), **meta, "saved": saved}

    app.state.store = store
    return app


def _checked_counts(clicks_by_tool: dict[str, int], sid: int) -> int:
    """The page's click counts, refused (422) unless every tool is known and every count a
    plausible one; their total."""
    unknown = sorted(set(clicks_by_tool) - set(TOOLS))
    if unknown:
        raise RefusedError(
            f"unknown tool {unknown[0]!r} in the click counts ({', '.join(TOOLS)})", 422
        )
    if any(v < 0 for v in clicks_by_tool.values()):
        raise RefusedError("click counts cannot be negative", 422)
    if any(v > MAX_CLICKS for v in clicks_by_tool.values()):
        raise RefusedError(f"sample {sid}: more than {MAX_CLICKS} clicks counted", 422)
    return sum(clicks_by_tool.values())


def _checked_labels(w: RoundWork, sid: int, text: str) -> np.ndarray:
    """The sample's box of labels from the page's base64, refused (422) unless it has the box's
    size, stays in the sample's region and holds classes of the list (the sample's own class,
    for a class layer)."""
    _, _, mask = w.region(sid)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RefusedError(f"sample {sid}: labels are not base64", 422) from None
    if len(raw) != mask.size:
        raise RefusedError(
            f"sample {sid}: {len(raw)} label bytes for a {mask.shape[1]}×{mask.shape[0]} box", 422
        )
    labels = np.frombuffer(raw, np.uint8).reshape(mask.shape).copy()
    w.check_labels(sid, labels)
    return labels


def _check_times(body: LabelSubmission, taken: float, sid: int) -> None:
    """The page's times must be ordered, and its active time fit between the moment the
    sample was taken and now (the server's clock; the page's may be a little off)."""
    if body.started > body.finished:
        raise RefusedError(f"sample {sid}: started after it finished", 422)
    held = time.time() - taken
    if body.active_s > held + CLOCK_SKEW_S:
        raise RefusedError(
            f"sample {sid}: {body.active_s:.0f} s of work claimed on a sample held {held:.0f} s",
            422,
        )
    if body.finished > time.time() + CLOCK_SKEW_S:
        raise RefusedError(f"sample {sid}: finished in the future", 422)


def _annotation(
    w: RoundWork, sid: int, body: LabelSubmission, who: str, click_factor: float
) -> Annotation:
    """Decode and check a submission; refused (422) when it cannot be right."""
    total = _checked_counts(body.clicks_by_tool, sid)
    if total == 0:
        raise RefusedError(f"sample {sid}: no click was counted, so no label can be accepted", 422)
    frame, box, _ = w.region(sid)
    labels = _checked_labels(w, sid, body.labels)
    # priced as if drawn from nothing; the page's count for honest work stays far below this
    price = region_clicks(labels, w.ws.cfg.annotation.polygon_tolerance).total
    cap = click_factor * max(price, 1) + 10
    if total > cap:
        raise RefusedError(
            f"sample {sid}: {total} clicks counted for labels the click model prices at {price} "
            f"(at most {cap:.0f}: app.click_factor)",
            422,
        )
    tool = max(body.clicks_by_tool, key=lambda k: body.clicks_by_tool[k])
    detail = {"clicks_by_tool": dict(body.clicks_by_tool), "active_s": round(body.active_s, 2)}
    detail["source"] = "app"
    return Annotation(
        sid, frame, box, labels, ClickCount(total, 0, 0), who, tool,
        body.started, min(body.finished, time.time()), detail, w.layer_class(sid),
    )  # fmt: skip
