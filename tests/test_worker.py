"""app/core/leases.py: the one worker loop of the executor, the Discord sender and the campaign
sender, over a queue in memory (each family's own behaviour is tested in its own suite)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest

from app.core.leases import Cycle, Worker, default_worker_id


class Boom(Exception):
    pass


class ListQueue:
    """Due items in a list; `fail_on` makes handling that item raise."""

    def __init__(self, items: Sequence[int], *, fail_on: int | None = None) -> None:
        self.due = list(items)
        self.fail_on = fail_on
        self.calls: list[str] = []

    def recover(self) -> None:
        self.calls.append("recover")

    def claim(self, limit: int) -> Sequence[int]:
        claimed, self.due = self.due[:limit], self.due[limit:]
        self.calls.append(f"claim {limit}: {len(claimed)}")
        return claimed

    def handle(self, item: int) -> str:
        if item == self.fail_on:
            raise Boom(f"item {item}")
        self.calls.append(f"handle {item}")
        return f"done {item}"


def test_a_cycle_recovers_then_claims_a_batch_and_handles_it_in_order() -> None:
    queue = ListQueue([1, 2, 3])
    cycle = Worker(queue, batch_size=2, name="t").run_once()
    assert cycle == Cycle(claimed=2, results=["done 1", "done 2"])
    assert queue.calls == ["recover", "claim 2: 2", "handle 1", "handle 2"]


def test_draining_runs_cycles_until_one_claims_nothing() -> None:
    queue = ListQueue(range(5))
    assert Worker(queue, batch_size=2, name="t").drain() == [f"done {n}" for n in range(5)]
    assert [call for call in queue.calls if call.startswith(("recover", "claim"))] == [
        "recover",
        "claim 2: 2",
        "recover",
        "claim 2: 2",
        "recover",
        "claim 2: 1",
        "recover",
        "claim 2: 0",
    ]


def test_an_exception_from_handle_ends_the_cycle_and_propagates_from_drain() -> None:
    queue = ListQueue([1, 2, 3], fail_on=2)
    with pytest.raises(Boom):
        Worker(queue, batch_size=10, name="t").drain()
    assert "handle 3" not in queue.calls  # the rest of the batch waits for its lease to run out


class StopAfter(threading.Event):
    """A stop event that records each wait and sets itself after `waits` of them (no wall time)."""

    def __init__(self, waits: int) -> None:
        super().__init__()
        self.left = waits
        self.waited: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(timeout or 0.0)
        self.left -= 1
        if self.left <= 0:
            self.set()
        return self.is_set()


def test_running_forever_waits_only_after_an_idle_cycle() -> None:
    queue = ListQueue(range(4))
    stop = StopAfter(waits=2)
    Worker(queue, batch_size=2, name="t").run_forever(stop, poll_seconds=7.0)
    # two busy cycles without waiting, then two idle cycles, each followed by one wait
    assert stop.waited == [7.0, 7.0]
    assert [call for call in queue.calls if call.startswith("claim")] == [
        "claim 2: 2",
        "claim 2: 2",
        "claim 2: 0",
        "claim 2: 0",
    ]


def test_a_failing_cycle_is_logged_and_the_worker_goes_on_after_waiting(caplog: pytest.LogCaptureFixture) -> None:
    queue = ListQueue([1, 2], fail_on=1)
    stop = StopAfter(waits=2)
    with caplog.at_level(logging.ERROR, logger="app.core.leases"):
        Worker(queue, batch_size=1, name="outbox").run_forever(stop, poll_seconds=3.0)
    assert stop.waited == [3.0, 3.0]
    assert [r.getMessage() for r in caplog.records] == ["outbox: cycle failed"]
    assert caplog.records[0].exc_info is not None and caplog.records[0].exc_info[0] is Boom
    assert "handle 2" in queue.calls  # the next cycle went on with the next item


def test_a_stopped_worker_runs_no_cycle() -> None:
    queue = ListQueue([1])
    stop = threading.Event()
    stop.set()
    Worker(queue, batch_size=1, name="t").run_forever(stop, poll_seconds=1.0)
    assert queue.calls == []


def test_the_worker_id_names_the_host_process_and_thread() -> None:
    host, pid, thread = default_worker_id().rsplit(":", 2)
    assert host and pid.isdigit() and thread == str(threading.get_ident())
