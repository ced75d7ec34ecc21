"""The shared rate limit (take_rate_slot, SharedRateLimiter) on a real database: two limiters, as two
processes would hold, together never put more than the limit into one window."""

from __future__ import annotations

import threading

import psycopg
import pytest

from app.clients.rate_slots import DbRateSlots
from app.core.database import Database
from app.core.errors import InvalidInput
from integrations.rate_limit import SharedRateLimiter
from tests.conftest import advance_clock


def start_of_window(sql: psycopg.Connection, seconds: float) -> None:
    """Move the database clock to the start of a window, so a short test stays inside it."""
    row = sql.execute("select extract(epoch from db_now())::double precision").fetchone()
    assert row is not None
    advance_clock(sql, seconds - row[0] % seconds)


def test_a_full_window_makes_the_other_process_wait_for_the_next(db: Database, sql: psycopg.Connection) -> None:
    start_of_window(sql, 10.0)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the database clock moves; the test does not wait
        waits.append(seconds)
        advance_clock(sql, seconds)

    service = SharedRateLimiter(DbRateSlots(db), "vendor", 2, 10.0, sleep=sleep)
    cli = SharedRateLimiter(DbRateSlots(db), "vendor", 2, 10.0, sleep=sleep)
    assert service.acquire() == 0.0 and cli.acquire() == 0.0
    waited = service.acquire()
    assert waits == [waited] and 9.0 < waited <= 10.0
    assert db.call("take_rate_slot", bucket="other", limit=1, window_seconds=10.0)["granted"]  # buckets apart


def test_two_limiters_in_threads_never_exceed_the_limit_in_a_window(
    db: Database, sql: psycopg.Connection, database_url: str
) -> None:
    limit, per_thread = 3, 5
    lock = threading.Lock()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        with lock, psycopg.connect(database_url, autocommit=True) as conn:
            waits.append(seconds)
            advance_clock(conn, seconds)

    limiters = [SharedRateLimiter(DbRateSlots(db), "vendor", limit, 1.0, sleep=sleep) for _ in range(2)]
    threads = [
        threading.Thread(target=lambda lim=lim: [lim.acquire() for _ in range(per_thread)])
        for lim in limiters
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    counts = [row[0] for row in sql.execute("select used from rate_windows where bucket = 'vendor'")]
    assert sum(counts) == len(threads) * per_thread  # every slot is still counted (none pruned)
    assert max(counts) <= limit and len(counts) >= len(threads) * per_thread / limit
    assert waits and all(0.0 < wait <= 1.0 for wait in waits)


def test_windows_older_than_a_minute_are_dropped(db: Database, sql: psycopg.Connection) -> None:
    db.call("take_rate_slot", bucket="vendor", limit=5, window_seconds=1.0)
    advance_clock(sql, 61.0)
    db.call("take_rate_slot", bucket="vendor", limit=5, window_seconds=1.0)  # opens a window: prunes
    assert sql.execute("select count(*) from rate_windows").fetchone() == (1,)


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0)])
def test_a_meaningless_limit_is_refused(db: Database, limit: int, window: float) -> None:
    with pytest.raises(InvalidInput):
        db.call("take_rate_slot", bucket="vendor", limit=limit, window_seconds=window)
