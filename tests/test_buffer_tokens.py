"""Buffer's grant in the database (app/buffer_tokens.py, schema.sql buffer_*): encrypted at rest,
one refresh lease at a time, a refresh that never finished read as a lost answer, and several OS
processes refreshing at once against the fake that revokes the grant on reuse."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from app.clients.buffer_tokens import DbTokenStore, TokenCipher
from app.core.database import Database
from app.core.errors import Conflict
from integrations.buffer_oauth import TokenPair
from integrations.errors import NotConfigured
from tests.buffer_refresher import refresh_and_post
from tests.conftest import advance_clock
from tests.fake_buffer import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, FakeBuffer
from tests.fake_buffer_oauth import ManualClock
from tests.in_process import InProcessTokenStore

KEY = Fernet.generate_key().decode()


def pair(access: str = "access-1", refresh: str | None = "refresh-1", expires_in: float = 3600) -> TokenPair:
    return TokenPair(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh) if refresh else None,
        expires_in=expires_in,
        scope="posts:write",
    )


@pytest.fixture
def told() -> list[str]:
    return []


@pytest.fixture
def store(db: Database, told: list[str]) -> DbTokenStore:
    return DbTokenStore(db, TokenCipher(SecretStr(KEY)), on_reconnect=told.append)


def test_tokens_are_stored_encrypted_and_read_back(store: DbTokenStore, sql: psycopg.Connection) -> None:
    assert store.current() is None
    store.save(pair())
    row = sql.execute("select access_token_enc, refresh_token_enc from buffer_grants").fetchone()
    assert row is not None and "access-1" not in row[0] and "refresh-1" not in row[1]
    state = store.current()
    assert state is not None and state.access_token is not None
    assert state.access_token.get_secret_value() == "access-1" and 3590 < (state.seconds_left or 0) <= 3600


def test_a_wrong_key_is_a_configuration_error(db: Database, store: DbTokenStore) -> None:
    store.save(pair())
    other = DbTokenStore(db, TokenCipher(SecretStr(Fernet.generate_key().decode())))
    with pytest.raises(NotConfigured, match="does not open"):
        other.current()
    with pytest.raises(NotConfigured, match="not a Fernet key"):
        TokenCipher(SecretStr("not-a-key"))


def test_one_lease_at_a_time_and_only_while_expiring(store: DbTokenStore, sql: psycopg.Connection) -> None:
    store.save(pair())
    assert store.begin_refresh(margin_seconds=300, lease_seconds=60).state == "fresh"
    advance_clock(sql, 3400)
    first = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert first.state == "refresh" and first.refresh_token is not None
    assert first.refresh_token.get_secret_value() == "refresh-1"
    busy = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert busy.state == "busy" and 0 < busy.retry_after <= 60
    assert first.lease is not None
    store.finish_refresh(first.lease, pair("access-2", "refresh-2"))
    fresh = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert fresh.state == "fresh" and fresh.grant is not None and fresh.grant.access_token is not None
    assert fresh.grant.access_token.get_secret_value() == "access-2"
    with pytest.raises(Conflict):  # a lease is used once
        store.finish_refresh(first.lease, pair("access-3", "refresh-3"))


def test_an_abandoned_refresh_lets_the_next_caller_refresh(store: DbTokenStore, sql: psycopg.Connection) -> None:
    store.save(pair())
    advance_clock(sql, 3600)
    first = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert first.lease is not None
    store.abandon_refresh(first.lease)
    again = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert again.state == "refresh" and again.lease != first.lease


def test_a_lease_that_ran_out_is_a_lost_answer(store: DbTokenStore, sql: psycopg.Connection, told: list[str]) -> None:
    store.save(pair())
    advance_clock(sql, 3600)
    first = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    advance_clock(sql, 61)
    dead = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert dead.state == "reconnect_needed" and "answer was lost" in (dead.reason or "")
    assert told == [dead.reason]
    assert first.lease is not None
    with pytest.raises(Conflict):  # the late answer is not stored over a dead grant
        store.finish_refresh(first.lease, pair("late", "late"))
    assert store.begin_refresh(margin_seconds=300, lease_seconds=60).state == "reconnect_needed"
    assert told == [dead.reason]  # the owner is told once


def test_reconnecting_is_told_once_and_a_new_connection_clears_it(store: DbTokenStore, told: list[str]) -> None:
    store.save(pair())
    store.reconnect_needed("invalid_grant: grant request is invalid")
    store.reconnect_needed("401 again")
    assert told == ["invalid_grant: grant request is invalid"]
    state = store.current()
    assert state is not None and state.status == "reconnect_needed" and state.access_token is None
    assert state.reason == "invalid_grant: grant request is invalid"
    status = store.status()
    assert status is not None and not any(k.endswith("_enc") for k in status)
    store.save(pair("new", "new"))
    state = store.current()
    assert state is not None and state.status == "connected" and state.reason is None


def test_the_day_window_survives_short_windows_opening(db: Database, sql: psycopg.Connection) -> None:
    """take_rate_slot used to drop every window a minute after it started: a 24-hour count emptied
    whenever any 10-second window opened."""
    assert db.call("take_rate_slot", bucket="buffer-24h", limit=1, window_seconds=86_400.0)["granted"]
    advance_clock(sql, 120)
    assert db.call("take_rate_slot", bucket="hubspot", limit=1, window_seconds=10.0)["granted"]
    assert not db.call("take_rate_slot", bucket="buffer-24h", limit=1, window_seconds=86_400.0)["granted"]


# --- several OS processes ------------------------------------------------------------------------
@pytest.fixture
def buffer() -> Iterator[FakeBuffer]:
    with FakeBuffer() as fake:
        yield fake
    assert fake.internal_errors == []


def test_processes_refreshing_at_once_make_exactly_one_refresh(
    buffer: FakeBuffer, store: DbTokenStore, sql: psycopg.Connection, database_url: str
) -> None:
    issued = buffer.oauth.issue(CLIENT_ID)
    store.save(
        TokenPair(
            access_token=SecretStr(str(issued["access_token"])),
            refresh_token=SecretStr(str(issued["refresh_token"])),
            expires_in=float(issued["expires_in"]),
        )
    )
    buffer.clock.advance(3600)  # both clocks: the access token has expired at Buffer and in the store
    advance_clock(sql, 3600)
    buffer.oauth.refresh_gate = threading.Event()  # the first refresh waits for the others
    processes = 4
    spawn = multiprocessing.get_context("spawn")
    barrier, out = spawn.Barrier(processes), spawn.Queue()
    oauth = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "auth_url": buffer.auth_url,
    }
    workers = [
        spawn.Process(
            target=refresh_and_post,
            args=(n, database_url, KEY, oauth, buffer.api_url, buffer.channel("linkedin").id, barrier, out),
        )
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        assert buffer.oauth.wait_refresh_calls(1, timeout=60)
        buffer.oauth.refresh_gate.set()
        reports = [out.get(timeout=60) for _ in workers]
    finally:
        buffer.oauth.refresh_gate.set()
        for worker in workers:
            worker.join(30)
    assert [r.get("error") for r in reports] == [None] * processes
    assert buffer.oauth.refresh_calls == 1 and buffer.oauth.reuse_detected == 0
    assert buffer.oauth.revoked_grants() == []
    state = store.current()
    assert state is not None and state.access_token is not None
    new_token = hashlib.sha256(state.access_token.get_secret_value().encode()).hexdigest()
    assert {r["token"] for r in reports} == {new_token} and new_token != issued["access_token"]
    assert sorted(p.text for p in buffer.created_posts()) == [f"from process {n}" for n in range(processes)]


# --- one contract for both stores ----------------------------------------------------------------
@pytest.fixture(params=["in-process", "database"])
def either(
    request: pytest.FixtureRequest, db: Database, sql: psycopg.Connection
) -> tuple[Any, Callable[[float], None]]:
    """A store with a grant saved, and how to move its clock."""
    if request.param == "in-process":
        clock = ManualClock()
        return InProcessTokenStore(clock, pair()), clock.advance
    store = DbTokenStore(db, TokenCipher(SecretStr(KEY)))
    store.save(pair())
    return store, lambda seconds: advance_clock(sql, seconds)


def test_both_stores_keep_the_same_rules(either: tuple[Any, Callable[[float], None]]) -> None:
    store, advance = either
    assert store.begin_refresh(margin_seconds=300, lease_seconds=60).state == "fresh"
    advance(3500)
    current = store.current()
    assert current.status == "connected" and current.seconds_left is not None and current.seconds_left <= 100
    first = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert first.state == "refresh" and first.refresh_token.get_secret_value() == "refresh-1"
    assert store.begin_refresh(margin_seconds=300, lease_seconds=60).state == "busy"
    store.abandon_refresh(first.lease)
    second = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    store.finish_refresh(second.lease, pair("access-2", "refresh-2"))
    fresh = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert fresh.state == "fresh" and fresh.grant.access_token.get_secret_value() == "access-2"
    advance(3600)
    third = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    advance(61)
    assert store.begin_refresh(margin_seconds=300, lease_seconds=60).state == "reconnect_needed"
    assert third.state == "refresh" and store.current().status == "reconnect_needed"
    store.reconnect_needed("again")
    assert "answer was lost" in (store.current().reason or "")
