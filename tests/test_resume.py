"""The app resumes a paused campaign flow in the background: the last hand-in of a round is
answered before Prefect has taken the new state, a failed resume is tried again, and a last
failure says how to resume by hand (the labels are on disk before any of it)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from hvsa.app import resume


def _join(name: str) -> None:
    for t in threading.enumerate():
        if t.name == name:
            t.join(10)
            assert not t.is_alive(), f"{name} still running"


@pytest.fixture
def paused(monkeypatch):
    monkeypatch.setattr(resume, "paused_run_of", lambda ws, video: SimpleNamespace(id="run-7"))
    monkeypatch.setattr(resume, "RESUME_RETRY_S", (0.0, 0.0))


def test_the_answer_does_not_wait_for_prefect(paused, monkeypatch):
    sent, release = [], threading.Event()

    def slow_resume(run_id, run_input):
        release.wait(10)  # Prefect's server busy
        sent.append((run_id, run_input))

    monkeypatch.setattr("prefect.flow_runs.resume_flow_run", slow_resume)
    got = resume.resume_in_background(Path("ws"), "cam", 2, "inbox/cam/r2.npz")
    assert got == "run-7" and sent == []  # answered; the resume not yet taken
    release.set()
    _join("resume-cam-r2")
    assert sent == [("run-7", {"video": "cam", "round": 2, "submission": "inbox/cam/r2.npz"})]


def test_a_failed_resume_is_tried_again(paused, monkeypatch):
    tries = []

    def flaky(run_id, run_input):
        tries.append(run_id)
        if len(tries) < 3:
            raise ConnectionError("server busy")

    monkeypatch.setattr("prefect.flow_runs.resume_flow_run", flaky)
    assert resume.resume_in_background(Path("ws"), "cam", 3, "inbox/cam/r3.npz") == "run-7"
    _join("resume-cam-r3")
    assert tries == ["run-7"] * 3


def test_a_resume_that_never_goes_through_says_how_to_resume(paused, monkeypatch, caplog):
    def down(run_id, run_input):
        raise ConnectionError("no server")

    monkeypatch.setattr("prefect.flow_runs.resume_flow_run", down)
    with caplog.at_level(logging.WARNING, logger="hvsa.app.resume"):
        resume.resume_in_background(Path("ws"), "cam", 4, "inbox/cam/r4.npz")
        _join("resume-cam-r4")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "run-7 could not be resumed" in errors[0]
    assert "inbox/cam/r4.npz" in errors[0] and "video='cam', round=4" in errors[0]


def test_no_paused_run_is_said_at_once(monkeypatch):
    monkeypatch.setattr(resume, "paused_run_of", lambda ws, video: None)
    before = {t.name for t in threading.enumerate()}
    assert resume.resume_in_background(Path("ws"), "cam", 5, "inbox/cam/r5.npz") is None
    assert "resume-cam-r5" not in {t.name for t in threading.enumerate()} - before
