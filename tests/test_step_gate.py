"""The gate a campaign's video runs take turns at: never more steps at once than its slots,
and let in strictly in the order they asked."""

import threading
import time

from hvsa.campaign.flow import StepGate


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
