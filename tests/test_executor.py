"""The executor on real PostgreSQL: handlers, retries, leases, crashes, several processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.database import Database
from app.core.errors import StaleAttempt
from app.core.models import ActionRequest, Impact
from app.core.settings import Settings
from app.kinds.base import ActionKind
from app.kinds.builtin import NoteRecordPayload
from app.kinds.context import HandlerContext, idempotency_key
from tests.conftest import advance_clock, make_settings
from tests.fake_http import FakeServer, Recorded, Reply

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for another process to reach a state (not a timed sleep: the outcome never depends on it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def note_action(body: str = "hello") -> ActionRequest:
    return ActionRequest(agent="ops", kind="note.record", summary="note", payload={"body": body})


def webhook_action(n: int = 0) -> ActionRequest:
    return ActionRequest(
        agent="ops", kind="webhook.post", summary=f"event {n}", payload={"event": "deal.won", "data": {"n": n}}
    )


def status_of(sql: psycopg.Connection, action_id: UUID) -> str:
    return sql.execute("select status from actions where id = %s", (action_id,)).fetchone()[0]


def events(sql: psycopg.Connection, action_id: UUID) -> list[tuple[str, str, str]]:
    return sql.execute(
        "select event, to_status, actor from audit_log where action_id = %s order by id", (action_id,)
    ).fetchall()


@pytest.fixture
def sleeps() -> list[float]:
    return []


ExecutorFactory = Callable[..., Executor]


@pytest.fixture
def executor_for(sleeps: list[float]) -> Iterator[ExecutorFactory]:
    """Executors whose in-process retries record their waits instead of sleeping."""
    made: list[Executor] = []

    def make(db: Database, settings: Settings, worker: str = "w1") -> Executor:
        executor = Executor(
            db, settings, worker_id=worker, clients=Clients(settings, sleep=sleeps.append), rng=lambda: 1.0
        )
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close()


@pytest.fixture
def webhook() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def hook_settings(database_url: str, webhook: FakeServer) -> Settings:
    return make_settings(database_url=database_url, webhook_post_url=f"{webhook.url}/hook", executor_max_attempts=3)


def test_note_record_runs_once(
    db: Database, settings: Settings, sql: psycopg.Connection, executor_for: ExecutorFactory, sleeps: list[float]
) -> None:
    action = ApprovalQueue(db, settings).submit(note_action(), actor="t")
    assert executor_for(db, settings).run_until_idle() == 1
    assert status_of(sql, action.id) == "succeeded"
    assert sql.execute("select body from notes where action_id = %s", (action.id,)).fetchall() == [("hello",)]
    assert [e[0] for e in events(sql, action.id)] == ["submitted", "auto_approved", "claimed", "finished"]
    assert executor_for(db, settings).run_until_idle() == 0


def test_pending_actions_do_not_run(
    db: Database, settings: Settings, sql: psycopg.Connection, executor_for: ExecutorFactory, sleeps: list[float]
) -> None:
    request = ActionRequest(
        agent="ops", kind="note.record", summary="note", payload={"body": "x"}, impact=Impact(recipients=100)
    )
    action = ApprovalQueue(db, settings).submit(request, actor="t")
    assert executor_for(db, settings).run_until_idle() == 0
    assert status_of(sql, action.id) == "pending"


def test_webhook_carries_an_idempotency_key_derived_from_the_action(
    db: Database,
    hook_settings: Settings,
    webhook: FakeServer,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
    sleeps: list[float],
) -> None:
    action = ApprovalQueue(db, hook_settings).submit(webhook_action(7), actor="t")
    executor_for(db, hook_settings).run_until_idle()
    assert status_of(sql, action.id) == "succeeded"
    [request] = webhook.requests
    assert request.path == "/hook"
    assert request.headers["idempotency-key"] == idempotency_key(action.id)
    assert request.json() == {"event": "deal.won", "data": {"n": 7}, "action_id": str(action.id)}


def test_500_then_success_retries_in_process_with_the_same_key(
    db: Database,
    hook_settings: Settings,
    webhook: FakeServer,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
    sleeps: list[float],
) -> None:
    answers = iter([Reply(500), Reply(200, {"ok": True})])
    webhook.responder = lambda _: next(answers)
    action = ApprovalQueue(db, hook_settings).submit(webhook_action(), actor="t")
    executor_for(db, hook_settings).run_until_idle()
    assert status_of(sql, action.id) == "succeeded"
    assert len({r.headers["idempotency-key"] for r in webhook.requests}) == 1
    assert len(webhook.requests) == 2 and len(sleeps) == 1


def test_429_waits_for_retry_after_without_using_an_attempt(
    db: Database,
    hook_settings: Settings,
    webhook: FakeServer,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
    sleeps: list[float],
) -> None:
    answers = iter([Reply(429, headers={"Retry-After": "120"}), Reply(200)])
    webhook.responder = lambda _: next(answers)
    action = ApprovalQueue(db, hook_settings).submit(webhook_action(), actor="t")
    executor = executor_for(db, hook_settings)
    executor.run_until_idle()
    attempts, wait = sql.execute(
        "select attempts, extract(epoch from run_after - db_now()) from actions where id = %s", (action.id,)
    ).fetchone()
    assert status_of(sql, action.id) == "approved" and attempts == 0
    assert 115 < float(wait) <= 120  # rescheduled in the database, not slept in a worker
    assert sleeps == []
    assert executor.run_until_idle() == 0  # not due yet
    advance_clock(sql, 121)
    executor.run_until_idle()
    assert status_of(sql, action.id) == "succeeded"


def test_persistent_5xx_backs_off_then_fails_after_max_attempts(
    db: Database,
    hook_settings: Settings,
    webhook: FakeServer,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
    sleeps: list[float],
) -> None:
    webhook.responder = lambda _: Reply(503)
    action = ApprovalQueue(db, hook_settings).submit(webhook_action(), actor="t")
    executor = executor_for(db, hook_settings)
    for attempt in range(1, 4):
        executor.run_until_idle()
        if attempt < 3:
            assert status_of(sql, action.id) == "approved"
            advance_clock(sql, 3600)
    row = sql.execute("select status, attempts, last_error from actions where id = %s", (action.id,)).fetchone()
    assert row[0] == "failed" and row[1] == 3 and "gave up after 3 attempts" in row[2]
    # three tries in the first attempt, two in the second; then the breaker (5 failures in a row)
    # opened and the last attempt did not call out at all
    assert len(webhook.requests) == 5
    assert "circuit open" in row[2]


def test_4xx_fails_at_once(
    db: Database,
    hook_settings: Settings,
    webhook: FakeServer,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
    sleeps: list[float],
) -> None:
    webhook.responder = lambda _: Reply(400, {"error": "bad event"})
    action = ApprovalQueue(db, hook_settings).submit(webhook_action(), actor="t")
    executor_for(db, hook_settings).run_until_idle()
    assert status_of(sql, action.id) == "failed" and len(webhook.requests) == 1


def test_missing_webhook_url_fails_before_dispatch(
    db: Database, settings: Settings, sql: psycopg.Connection, executor_for: ExecutorFactory, sleeps: list[float]
) -> None:
    action = ApprovalQueue(db, settings).submit(webhook_action(), actor="t")
    executor_for(db, settings).run_until_idle()
    row = sql.execute("select status, dispatched_at, last_error from actions where id = %s", (action.id,)).fetchone()
    assert row[0] == "failed" and row[1] is None and "WEBHOOK_POST_URL" in row[2]


def claim(db: Database, worker: str, lease: float = 60) -> dict[str, Any]:
    [claimed] = db.call("claim_actions", worker=worker, lease_seconds=lease, limit=1)
    return claimed


def test_a_late_finish_cannot_overwrite_a_newer_attempt(
    db: Database, settings: Settings, sql: psycopg.Connection
) -> None:
    action = ApprovalQueue(db, settings).submit(note_action(), actor="t")
    first = claim(db, "slow-worker")
    advance_clock(sql, 61)
    assert db.call("recover_expired_leases", actor="rescue", limit=10)["recovered"] == [
        {"id": str(action.id), "status": "approved"}
    ]
    second = claim(db, "fast-worker")
    db.call(
        "finish_action",
        id=action.id,
        attempt_token=second["attempt_token"],
        outcome="succeeded",
        result={"by": "fast"},
        error=None,
        retry_in_seconds=None,
        count_attempt=True,
    )
    with pytest.raises(StaleAttempt):
        db.call(
            "finish_action",
            id=action.id,
            attempt_token=first["attempt_token"],
            outcome="failed",
            result=None,
            error="late",
            retry_in_seconds=None,
            count_attempt=True,
        )
    with pytest.raises(StaleAttempt):
        db.call("mark_dispatched", id=action.id, attempt_token=first["attempt_token"])
    assert sql.execute("select status, result from actions where id = %s", (action.id,)).fetchone() == (
        "succeeded",
        {"by": "fast"},
    )


def test_a_renewed_lease_is_not_rescued_and_a_stale_attempt_cannot_renew(
    db: Database,
    database_url: str,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
) -> None:
    settings = make_settings(database_url=database_url, executor_lease_seconds=60)
    rescued: list[Any] = []

    def slow(ctx: HandlerContext) -> dict[str, Any]:
        for _ in range(3):  # outside requests taking 150 s in all, each well within the 60-s lease
            ctx.heartbeat()
            advance_clock(sql, 50)
            rescued.extend(db.call("recover_expired_leases", actor="rescue", limit=10)["recovered"])
        return {"done": True}

    kinds = {
        "note.record": ActionKind(name="note.record", description="slow", payload_model=NoteRecordPayload, handler=slow)
    }
    action = ApprovalQueue(db, settings).submit(note_action(), actor="t")
    executor = Executor(db, settings, kinds=kinds, worker_id="w1", clients=Clients(settings))
    try:
        assert executor.run_until_idle() == 1
    finally:
        executor.close()
    assert rescued == [] and status_of(sql, action.id) == "succeeded"

    other = ApprovalQueue(db, settings).submit(note_action("other"), actor="t")
    stalled = claim(db, "stalled")
    advance_clock(sql, 61)
    assert db.call("recover_expired_leases", actor="rescue", limit=10)["recovered"] == [
        {"id": str(other.id), "status": "approved"}
    ]
    with pytest.raises(StaleAttempt):
        db.call("renew_action_lease", id=other.id, attempt_token=stalled["attempt_token"], lease_seconds=60)
    assert status_of(sql, other.id) == "approved"


def test_a_rescue_racing_a_completion_leaves_it_completed(
    db: Database, settings: Settings, database_url: str, sql: psycopg.Connection
) -> None:
    action = ApprovalQueue(db, settings).submit(note_action(), actor="t")
    claimed = claim(db, "w1")
    advance_clock(sql, 61)  # the lease has run out, but the worker is finishing right now
    with psycopg.connect(database_url) as finishing:
        finishing.execute(
            "select finish_action(p_id => %s, p_attempt_token => %s, p_outcome => 'succeeded', "
            "p_result => '{}'::jsonb, p_error => null, p_retry_in_seconds => null, p_count_attempt => true)",
            (action.id, claimed["attempt_token"]),
        )
        # the completion holds the row lock, uncommitted; the rescue runs concurrently
        assert db.call("recover_expired_leases", actor="rescue", limit=10)["recovered"] == []
        finishing.commit()
    assert db.call("recover_expired_leases", actor="rescue", limit=10)["recovered"] == []
    assert status_of(sql, action.id) == "succeeded"
    assert "lease_expired" not in [e[0] for e in events(sql, action.id)]


def spawn_worker(database_url: str, worker: str, webhook_url: str | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.worker_process", database_url, worker]
    if webhook_url:
        args.append(webhook_url)
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_four_worker_processes_run_two_hundred_actions_exactly_once(
    db: Database, hook_settings: Settings, webhook: FakeServer, database_url: str, sql: psycopg.Connection
) -> None:
    queue = ApprovalQueue(db, hook_settings)
    ids = {str(queue.submit(webhook_action(n), actor="t").id) for n in range(200)}
    workers = [spawn_worker(database_url, f"proc-{n}", f"{webhook.url}/hook") for n in range(4)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs
    assert sum(int(out.split()[1]) for out, _ in outputs) == 200
    keys = Counter(r.headers["idempotency-key"] for r in webhook.requests)
    assert len(webhook.requests) == 200 and set(keys.values()) == {1}
    assert {r.json()["action_id"] for r in webhook.requests} == ids
    assert sql.execute("select status, count(*) from actions group by status").fetchall() == [("succeeded", 200)]
    claims = sql.execute(
        "select count(*), count(distinct action_id), count(distinct actor) from audit_log where event = 'claimed'"
    ).fetchone()
    assert claims[0] == claims[1] == 200 and claims[2] >= 2  # the work was shared


def blocked_on_lock(sql: psycopg.Connection) -> bool:
    return (
        sql.execute(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()"
        ).fetchone()[0]
        > 0
    )


def test_sigkill_before_any_outside_call_is_recovered_and_run_once(
    db: Database,
    settings: Settings,
    database_url: str,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
    sleeps: list[float],
) -> None:
    action = ApprovalQueue(db, settings).submit(note_action("after the crash"), actor="t")
    with psycopg.connect(database_url) as holder:
        holder.execute("lock table notes in access exclusive mode")  # the handler will block here
        worker = spawn_worker(database_url, "doomed")
        wait_until(lambda: blocked_on_lock(sql), "the worker to block inside its handler")
        assert status_of(sql, action.id) == "running"
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=10)
        holder.rollback()
    assert status_of(sql, action.id) == "running"  # nobody knows yet
    executor = executor_for(db, settings, worker="survivor")
    assert executor.run_until_idle() == 0  # lease still valid: nothing to do
    advance_clock(sql, 61)
    assert executor.run_until_idle() == 1
    assert status_of(sql, action.id) == "succeeded"
    assert sql.execute("select count(*) from notes where action_id = %s", (action.id,)).fetchone() == (1,)
    assert ("lease_expired", "approved", "lease-recovery:survivor") in events(sql, action.id)


def test_sigkill_after_the_outside_call_started_leaves_it_unknown(
    db: Database,
    hook_settings: Settings,
    webhook: FakeServer,
    database_url: str,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
    sleeps: list[float],
) -> None:
    def hold(_: Recorded) -> Reply:
        webhook.release.wait()
        return Reply(200)

    webhook.responder = hold
    action = ApprovalQueue(db, hook_settings).submit(webhook_action(), actor="t")
    worker = spawn_worker(database_url, "doomed", f"{webhook.url}/hook")
    assert webhook.received.wait(20)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=10)
    advance_clock(sql, 61)
    executor_for(db, hook_settings, worker="survivor").run_until_idle()
    assert status_of(sql, action.id) == "unknown"
    assert len(webhook.requests) == 1  # never re-sent blindly
    ApprovalQueue(db, hook_settings).settle(action.id, "succeeded", actor="ann", reason="the receiver logged event 0")
    assert status_of(sql, action.id) == "succeeded"


def test_sigstop_past_the_lease_cannot_record_after_sigcont(
    db: Database,
    settings: Settings,
    database_url: str,
    sql: psycopg.Connection,
    executor_for: ExecutorFactory,
    sleeps: list[float],
) -> None:
    action = ApprovalQueue(db, settings).submit(note_action(), actor="t")
    with psycopg.connect(database_url) as holder:
        holder.execute("lock table notes in access exclusive mode")
        paused = spawn_worker(database_url, "paused")
        wait_until(lambda: blocked_on_lock(sql), "the worker to block inside its handler")
        paused.send_signal(signal.SIGSTOP)
        holder.rollback()
    try:
        advance_clock(sql, 61)
        executor_for(db, settings, worker="other").run_until_idle()
        assert status_of(sql, action.id) == "succeeded"
    finally:
        paused.send_signal(signal.SIGCONT)
    _, err = paused.communicate(timeout=30)
    assert paused.returncode == 0
    assert "newer attempt took over" in err
    finished = [e for e in events(sql, action.id) if e[0] == "finished"]
    assert finished == [("finished", "succeeded", "other")]
    assert status_of(sql, action.id) == "succeeded"


def test_worker_thread_survives_a_database_hiccup(
    db: Database, settings: Settings, executor_for: ExecutorFactory, sleeps: list[float]
) -> None:
    executor = executor_for(db, settings)
    calls: list[str] = []
    original = executor.run_once

    def flaky() -> int:
        calls.append("x")
        if len(calls) == 1:
            raise RuntimeError("database went away")
        stop.set()
        return original()

    stop = threading.Event()
    executor.run_once = flaky  # type: ignore[method-assign]
    fast = settings.model_copy(update={"executor_poll_seconds": 0.01})
    executor.settings = fast
    executor.run_forever(stop)
    assert calls == ["x", "x"]
