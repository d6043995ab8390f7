"""The annotation web app: a FastAPI server over a campaign workspace, plain HTML + JS in front.

Annotators sign in with their token; the app hands each one the next free sample of an open
round, takes the labels back with the clicks the page counted, refuses anything that does not
fit (not their sample, already in, another round, outside the region, an unknown class), and,
when a round's last sample is in, hands the round in and resumes the paused campaign flow.
"""

from __future__ import annotations

import base64
import binascii
import time
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from hvsa.annotation.annotator import Annotation
from hvsa.app.resume import resume_waiting_run
from hvsa.app.store import RefusedError, app_store
from hvsa.app.work import TOOLS, RoundWork, open_rounds
from hvsa.campaign.workspace import Workspace
from hvsa.errors import HvsaError
from hvsa.method.clicks import ClickCount

# the page, as package data (an installed hvsa is unpacked files, so this is a real folder)
STATIC = Path(str(resources.files("hvsa.app") / "static"))


class LabelSubmission(BaseModel):
    """One sample's labels as the page hands them in."""

    labels: str  # base64 of the box's class ids, row by row, one byte each (255 = unlabelled)
    clicks_by_tool: dict[str, int]
    active_s: float = Field(ge=0)
    started: float
    finished: float


def create_app(workspace: str | Path, resume=resume_waiting_run) -> FastAPI:
    """The app for one workspace; ``resume`` wakes the waiting flow (replaceable in tests)."""
    root = Workspace.open(workspace).root
    store = app_store(Workspace.open(root))
    works: dict[tuple[str, int], RoundWork] = {}
    app = FastAPI(title="hvsa annotation")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HvsaError)
    def refused(_: Request, exc: HvsaError) -> JSONResponse:
        status = exc.status if isinstance(exc, RefusedError) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    def annotator(authorization: str | None) -> str:
        token = authorization.removeprefix("Bearer ").strip() if authorization else None
        return store.who(token)

    def work(video: str, round_no: int) -> RoundWork:
        """The round, refused unless it is open now (waiting for labels, not yet handed in)."""
        ws = Workspace.open(root)
        if (video, round_no) not in open_rounds(ws) or store.is_closed(video, round_no):
            now = ws.campaign.videos.get(video)
            where = f"the campaign is at round {now.round}" if now else "no such video"
            raise RefusedError(f"round {round_no} of {video} is not open for labels ({where})")
        if (video, round_no) not in works:
            works[(video, round_no)] = RoundWork(ws, video, round_no)
        return works[(video, round_no)]

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/me")
    def me(authorization: str | None = Header(None)) -> dict:
        return {"annotator": annotator(authorization)}

    @app.get("/api/rounds")
    def rounds(authorization: str | None = Header(None)) -> list[dict]:
        annotator(authorization)
        ws = Workspace.open(root)
        out = []
        for video, round_no in open_rounds(ws):
            if store.is_closed(video, round_no):
                continue
            w = work(video, round_no)
            held = store.assignments(video, round_no)
            out.append({
                "video": video, "round": round_no, "samples": len(w.order),
                "granularity": w.granularity,
                "submitted": sum(a.submitted is not None for a in held),
                "held": sum(a.submitted is None for a in held),
            })  # fmt: skip
        return out

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
        annotation = _annotation(w, sid, body, who)
        with store.transaction() as db:
            store.check_holder(db, video, round_no, sid, who)
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

    app.state.store = store
    return app


def _annotation(w: RoundWork, sid: int, body: LabelSubmission, who: str) -> Annotation:
    """Decode and check a submission; refused (422) when it cannot be right."""
    unknown = sorted(set(body.clicks_by_tool) - set(TOOLS))
    if unknown:
        raise RefusedError(
            f"unknown tool {unknown[0]!r} in the click counts ({', '.join(TOOLS)})", 422
        )
    if any(v < 0 for v in body.clicks_by_tool.values()):
        raise RefusedError("click counts cannot be negative", 422)
    total = sum(body.clicks_by_tool.values())
    if total == 0:
        raise RefusedError(f"sample {sid}: no click was counted, so no label can be accepted", 422)
    frame, box, mask = w.region(sid)
    try:
        raw = base64.b64decode(body.labels, validate=True)
    except (binascii.Error, ValueError):
        raise RefusedError(f"sample {sid}: labels are not base64", 422) from None
    if len(raw) != mask.size:
        raise RefusedError(
            f"sample {sid}: {len(raw)} label bytes for a {mask.shape[1]}×{mask.shape[0]} box", 422
        )
    labels = np.frombuffer(raw, np.uint8).reshape(mask.shape).copy()
    w.check_labels(sid, labels)
    tool = max(body.clicks_by_tool, key=lambda k: body.clicks_by_tool[k])
    detail = {"clicks_by_tool": dict(body.clicks_by_tool), "active_s": round(body.active_s, 2)}
    detail["source"] = "app"
    return Annotation(
        sid, frame, box, labels, ClickCount(total, 0, 0), who, tool,
        body.started, min(body.finished, time.time()), detail, w.layer_class(sid),
    )  # fmt: skip
