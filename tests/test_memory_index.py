"""app.memory.index.WritePacer: vectors are written in calls sized to fit the statement timeout."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pytest

from app.core.errors import StatementTimeout
from app.memory.index import WRITE_TARGET_SECONDS, WritePacer


class Clock:
    """Each write takes `per_row` seconds per row it carries."""

    def __init__(self, per_row: float) -> None:
        self.now = 0.0
        self.per_row = per_row

    def __call__(self) -> float:
        return self.now


def test_slow_calls_shrink_the_next_ones_and_quick_calls_grow_them_back() -> None:
    clock = Clock(per_row=WRITE_TARGET_SECONDS / 16)  # more than 16 rows overruns the target
    pacer = WritePacer(64, clock=clock)
    sizes: list[int] = []

    def write(chunk: Sequence[int]) -> int:
        sizes.append(len(chunk))
        clock.now += clock.per_row * len(chunk)
        return len(chunk)

    assert sum(pacer.write(list(range(200)), write)) == 200
    assert sizes[:3] == [64, 32, 16] and set(sizes[3:-1]) == {16}  # 16 rows take exactly the target
    clock.per_row = 0.001  # the graph fits in memory again: quick calls
    sizes.clear()
    pacer.write(list(range(200)), write)
    assert sizes[:3] == [16, 32, 64] and pacer.size == 64


def test_a_call_the_timeout_stopped_is_tried_again_smaller_and_nothing_is_lost() -> None:
    pacer = WritePacer(64, clock=Clock(0))
    written: list[int] = []

    def write(chunk: Sequence[int]) -> int:
        if len(chunk) > 8:
            raise StatementTimeout("canceling statement due to statement timeout")
        written.extend(chunk)
        return len(chunk)

    assert pacer.write(list(range(100)), write) == [8] * 12 + [4]
    assert written == list(range(100))


def test_one_row_that_does_not_fit_is_an_error() -> None:
    def write(chunk: Sequence[int]) -> int:
        raise StatementTimeout("canceling statement due to statement timeout")

    with pytest.raises(StatementTimeout):
        WritePacer(4, clock=Clock(0)).write([1, 2, 3], write)


def test_start_up_never_waits_for_an_index_being_made(database_url: str, sql: psycopg.Connection) -> None:
    """While a step holds the memory lock (an index built in one statement on a server without a
    timeout may take minutes), configure_memory at start-up answers at once; a second step is busy."""
    sql.execute("select configure_memory('local/m', 4, false, '[\"ticket\"]')")
    with psycopg.connect(database_url) as builder, psycopg.connect(database_url, autocommit=True) as starting:
        builder.execute("select pg_advisory_xact_lock(7245190312)")  # holds it until its transaction ends
        starting.execute("set lock_timeout = '2s'")  # waiting would fail the test instead of hanging it
        settings = starting.execute(
            "select configure_memory('local/m', 4, false, '[\"ticket\", \"note\"]')"
        ).fetchone()[0]
        assert settings["kind_indexes"] == ["ticket"]  # the new kind waits for a start with the lock free
        assert starting.execute("select memory_index_step(10, 10)").fetchone()[0] == {"state": "busy"}
    assert sql.execute("select configure_memory('local/m', 4, false, '[\"ticket\", \"note\"]')").fetchone()[0][
        "kind_indexes"
    ] == ["note", "ticket"]
