"""The gate a campaign's video runs take turns at: never more steps at once than its slots,
and let in strictly in the order they asked; and the ramp their starts go through: the next
video's run starts when one before it has opened its round."""

import threading
import time

import pytest

from hvsa.campaign import flow
from hvsa.campaign.flow import OpeningRamp, StepGate, round_opened


def _run_six(slots: int) -> tuple[StepGate, int, list[str]]:
    """Six steps asking one after another at a gate of ``slots``: (gate, most inside at once,
    the order they got in)."""
    gate = StepGate(slots)
    inside, most, order = 0, 0, []
    lock = threading.Lock()
    hold = threading.Event()

    def step(name: str) -> None:
        nonlocal inside, most
        with gate():
            with lock:
                inside += 1
                most = max(most, inside)
                order.append(name)
            hold.wait(5)
            time.sleep(0.01)
            with lock:
                inside -= 1

    threads = []
    for i in range(6):  # each asks only once the one before is queued
        t = threading.Thread(target=step, args=(f"s{i}",))
        t.start()
        threads.append(t)
        deadline = time.time() + 5
        while len(gate._queue) + gate._running < i + 1 and time.time() < deadline:
            time.sleep(0.001)
    assert gate._running == slots and len(gate._queue) == 6 - slots  # the rest wait
    assert order == [f"s{i}" for i in range(slots)]
    hold.set()
    for t in threads:
        t.join(5)
    assert gate._running == 0 and not gate._queue
    return gate, most, order


def test_steps_take_turns_in_the_order_they_asked():
    _, most, order = _run_six(1)
    assert most == 1 and order == [f"s{i}" for i in range(6)]
    _, most, order = _run_six(2)  # who of two let in together appends first is a race
    assert most == 2 and sorted(order) == [f"s{i}" for i in range(6)]


def test_a_step_that_fails_gives_its_turn_back():
    gate = StepGate(1)
    try:
        with gate():
            raise RuntimeError("a stage failed")
    except RuntimeError:
        pass
    with gate():  # not blocked by the failed step's slot
        assert gate._running == 1


def _admit_in_thread(ramp: OpeningRamp, video: str) -> tuple[threading.Thread, threading.Event]:
    admitted = threading.Event()

    def go() -> None:
        ramp.admit("/ws", video)
        admitted.set()

    thread = threading.Thread(target=go, daemon=True)  # a failed test leaves none blocked
    thread.start()
    return thread, admitted


def _joined(thread: threading.Thread) -> None:
    thread.join(5)
    assert not thread.is_alive()


def test_the_next_video_starts_when_one_before_it_opens_its_round():
    ramp = OpeningRamp(1)
    ramp.admit("/ws", "a")
    thread, admitted = _admit_in_thread(ramp, "b")
    assert not admitted.wait(0.2)  # a still prepares its first round
    round_opened("/ws", "other")  # another video's round frees nothing
    round_opened("/elsewhere", "a")  # nor the same video's in another workspace
    assert not admitted.wait(0.1)
    round_opened("/ws", "a")
    assert admitted.wait(5)
    _joined(thread)
    round_opened("/ws", "a")  # a's later rounds: its place was given back once only
    ramp.release("/ws", "a")  # and its run's end gives nothing back again
    thread, admitted = _admit_in_thread(ramp, "c")
    assert not admitted.wait(0.2)  # b holds the one place
    ramp.release("/ws", "b")  # b's run ended (or failed) before opening a round
    assert admitted.wait(5)
    _joined(thread)
    with pytest.raises(ValueError, match="already holds"):
        ramp.admit("/ws", "c")  # a video holds one place, never two
    ramp.release("/ws", "c")
    assert not flow._RAMPS  # every place given back, nothing left registered


def test_as_many_videos_prepare_at_once_as_the_ramp_has_places():
    ramp = OpeningRamp(2)
    ramp.admit("/ws", "a")
    ramp.admit("/ws", "b")  # a second place: no wait
    thread, admitted = _admit_in_thread(ramp, "c")
    assert not admitted.wait(0.2)
    round_opened("/ws", "b")
    assert admitted.wait(5)
    _joined(thread)
    for video in "ac":
        ramp.release("/ws", video)
    assert not flow._RAMPS


def test_flow_runs_started_under_heartbeats_send_them_as_set(prefect_api):
    """A video's run starts in a thread of its own, which does not inherit the campaign's
    context: :class:`flow.Heartbeats` sets Prefect's heartbeat there, none by default
    (``campaign.heartbeat_s``), so no run's end waits for a heartbeat thread."""
    from concurrent.futures import ThreadPoolExecutor

    from prefect import flow as prefect_flow
    from prefect.settings import get_current_settings

    from hvsa.config import load_config

    seen: list[int | None] = []

    @prefect_flow(name="hvsa-heartbeat-probe")
    def probe() -> None:
        seen.append(get_current_settings().flows.heartbeat_frequency)

    default = load_config().campaign.heartbeat_s
    assert default is None
    for seconds in (default, 60):
        with ThreadPoolExecutor(1) as pool:

            beats = flow.Heartbeats(seconds)  # built here, entered in the thread

            def one(beats=beats) -> None:
                with beats():
                    probe()

            pool.submit(one).result()
    assert seen == [None, 60]
    with ThreadPoolExecutor(1) as pool:  # a thread left alone sees Prefect's own setting
        pool.submit(probe).result()
    prefects_own = get_current_settings().flows.heartbeat_frequency
    assert prefects_own is not None and seen[-1] == prefects_own


def test_a_heartbeat_under_thirty_seconds_is_refused():
    from pydantic import ValidationError

    from hvsa.config import load_config

    cfg = load_config()
    with pytest.raises(ValidationError):
        type(cfg.campaign).model_validate({**cfg.campaign.model_dump(), "heartbeat_s": 10})
