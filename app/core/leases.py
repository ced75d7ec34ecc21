"""The one worker loop of every queue-like table (schema.sql §5 "Leases").

A worker recovers what dead workers held (their leases ran out), claims a batch of due items (FOR
UPDATE SKIP LOCKED, a lease, a fresh attempt token) and handles each: the item's attempt ends in
the database, presenting its token. The executor (actions), the Discord sender (the outbox) and the
campaign sender (email batches) are `LeaseQueue`s; this loop is the same for all three.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)


def default_worker_id() -> str:
    """Who holds a lease: the host, the process and the thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class LeaseQueue(Protocol[ItemT, ResultT_co]):
    """A queue-like table as a worker sees it: its family's recover_*, claim_* and end functions."""

    def recover(self) -> None:
        """Give back, or settle, what workers whose lease ran out were holding."""

    def claim(self, limit: int) -> Sequence[ItemT]:
        """Claim up to `limit` due items for this worker."""

    def handle(self, item: ItemT) -> ResultT_co:
        """Run one claimed item and end its attempt. A superseded attempt (StaleAttempt) is the
        queue's to catch and log; whatever else escapes ends the cycle."""


@dataclass(frozen=True)
class Cycle(Generic[ResultT]):
    """One cycle: how many items were claimed, and what handling each gave."""

    claimed: int
    results: list[ResultT]


class Worker(Generic[ItemT, ResultT]):
    def __init__(self, queue: LeaseQueue[ItemT, ResultT], *, batch_size: int, name: str) -> None:
        self.queue = queue
        self.batch_size = batch_size
        self.name = name

    def run_once(self) -> Cycle[ResultT]:
        """Recover, claim a batch, handle each item in claim order. An exception from `handle` ends
        the cycle and propagates (its item's lease runs out and recovery settles it); the campaign
        sender relies on that to end a run whose caller's attempt was superseded."""
        self.queue.recover()
        items = self.queue.claim(self.batch_size)
        return Cycle(len(items), [self.queue.handle(item) for item in items])

    def drain(self) -> list[ResultT]:
        """Cycles until one claims nothing; every result, in order."""
        results: list[ResultT] = []
        while (cycle := self.run_once()).claimed:
            results.extend(cycle.results)
        return results

    def run_forever(self, stop: threading.Event, poll_seconds: float) -> None:
        run_forever(lambda: self.run_once().claimed, stop, poll_seconds=poll_seconds, name=self.name)


def run_forever(cycle: Callable[[], int], stop: threading.Event, *, poll_seconds: float, name: str) -> None:
    """Runs `cycle` (it returns how many items it claimed) until `stop` is set. A failing cycle (the
    database down) is logged and never ends the thread; after an idle or failed cycle it waits
    `poll_seconds`, or until `stop`."""
    while not stop.is_set():
        try:
            claimed = cycle()
        except Exception:  # an outage must not kill the worker thread
            log.exception("%s: cycle failed", name)
            claimed = 0
        if claimed == 0:
            stop.wait(poll_seconds)
