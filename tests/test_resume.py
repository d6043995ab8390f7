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


def test_a_failed_resume_is_tried_again_until_it_goes_through(paused, monkeypatch, caplog):
    monkeypatch.setattr(resume, "RESUME_RETRY_S", (0.0, 0.0, 0.0))
    tries = []

    def flaky(run_id, run_input):
        tries.append(run_id)
        if len(tries) < 3:
            raise ConnectionError("server busy")

    monkeypatch.setattr("prefect.flow_runs.resume_flow_run", flaky)
    with caplog.at_level(logging.INFO, logger="hvsa.app.resume"):
        assert resume.resume_in_background(Path("ws"), "cam", 3, "inbox/cam/r3.npz") == "run-7"
        _join("resume-cam-r3")
    assert tries == ["run-7"] * 3  # four tries allowed: it stops at the one that went through
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # how long it took, from the first try, and at which try it went through
    (done,) = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "cam round 3: flow run run-7 resumed in" in done and done.endswith("(try 3)")


def test_a_try_whose_answer_was_lost_counts_as_delivered(paused, monkeypatch, caplog):
    from prefect.exceptions import NotPausedError

    tries = []

    def lost_then_not_paused(run_id, run_input):
        tries.append(run_id)
        if len(tries) == 1:
            raise TimeoutError("read timed out")  # the server took it, the answer was lost
        raise NotPausedError("Cannot resume a run that isn't paused!")

    monkeypatch.setattr("prefect.flow_runs.resume_flow_run", lost_then_not_paused)
    with caplog.at_level(logging.INFO, logger="hvsa.app.resume"):
        resume.resume_in_background(Path("ws"), "cam", 6, "inbox/cam/r6.npz")
        _join("resume-cam-r6")
    assert tries == ["run-7"] * 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("resumed" in r.getMessage() for r in caplog.records)


def test_a_refused_resume_is_not_tried_again(paused, monkeypatch, caplog):
    from prefect.exceptions import FlowPauseTimeout

    tries = []

    def refused(run_id, run_input):
        tries.append(run_id)
        raise FlowPauseTimeout("Flow run can no longer be resumed.")

    monkeypatch.setattr("prefect.flow_runs.resume_flow_run", refused)
    with caplog.at_level(logging.WARNING, logger="hvsa.app.resume"):
        resume.resume_in_background(Path("ws"), "cam", 7, "inbox/cam/r7.npz")
        _join("resume-cam-r7")
    assert tries == ["run-7"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "refused the resume" in errors[0] and "round=7" in errors[0]


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
    sent = []
    monkeypatch.setattr("prefect.flow_runs.resume_flow_run", lambda *a, **k: sent.append(a))
    started = []
    monkeypatch.setattr(resume.threading, "Thread", lambda *a, **k: started.append(k))
    assert resume.resume_in_background(Path("ws"), "cam", 5, "inbox/cam/r5.npz") is None
    assert sent == [] and started == []
