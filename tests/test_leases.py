"""schema.sql §5 on its own: the one claim / lock / renew / dispatched / expiry lifecycle every queue
table uses (actions, Discord notifications, campaign batches, daily report sends). What it refuses,
what only the current attempt may do, and the composite key of campaign_batches. Then the whole
lifecycle once per queue through its family's own functions (claim, renew, dispatched, lost lease,
recovery, an old attempt fenced off); the rest of each family's rules are tested in test_executor,
test_notifications, test_email_quota and test_daily_report."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from app.core.database import Database, SupabaseTransport
from app.core.errors import InvalidInput, NotFound, StaleAttempt
from tests.conftest import advance_clock
from tests.postgrest_on_supabase import SERVICE_KEY, PostgrestOnSupabase
from tests.supabase_shape import SupabaseShape

NOT_QUEUES = ("audit_log", "job_runs", "memory", "notes")  # job_runs has a token and a lease of its own


def submit(db: Database, summary: str, kind: str = "note.record", *, risk: str = "LOW") -> str:
    """An approved action (LOW, so it runs without a decision), or a MEDIUM one waiting for one."""
    action = {"agent": "support", "kind": kind, "summary": summary, "payload": {"body": "x"}, "impact": {}}
    row = db.call(
        "submit_action",
        action=action,
        risk_level=risk,
        risk_reasons=[],
        auto_run=risk == "LOW",
        ttl_seconds=36000,
        max_attempts=5,
        actor="t",
        request_id=None,
    )
    return str(row["id"])


def claim(
    db: Database, *action_ids: str, lease: float = 60, also: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return db.call(
        "lease_claim",
        queue="actions",
        keys=[{"id": action_id} for action_id in action_ids],
        worker="w",
        lease_seconds=lease,
        also=also or {},
    )


def action(sql: psycopg.Connection, action_id: str) -> dict[str, Any]:
    return sql.execute("select to_jsonb(a) from actions a where id = %s", (action_id,)).fetchone()[0]


@pytest.mark.parametrize("table", NOT_QUEUES)
def test_a_table_outside_the_convention_is_refused_by_every_lease_function(db: Database, table: str) -> None:
    key, token = {"id": 1}, str(uuid.uuid4())
    calls = {
        "lease_claim": {"keys": [key], "worker": "w", "lease_seconds": 60},
        "lease_lock": {"key": key, "attempt_token": token},
        "lease_renew": {"key": key, "attempt_token": token, "lease_seconds": 60},
        "lease_dispatched": {"key": key, "attempt_token": token},
        "lease_expired": {"limit": 10},
    }
    for function, params in calls.items():
        with pytest.raises(InvalidInput, match=f"{table} is not a lease queue"):
            db.call(function, queue=table, **params)


def test_a_claim_takes_the_given_rows_in_the_given_order(db: Database, sql: psycopg.Connection) -> None:
    first, second, third = (submit(db, name) for name in ("first", "second", "third"))
    claimed = claim(db, third, first, lease=90, also={"started_at": "2026-01-02T03:04:05+00:00"})
    assert [row["id"] for row in claimed] == [third, first]
    assert {row["status"] for row in claimed} == {"running"}
    assert [row["attempts"] for row in claimed] == [1, 1]
    assert len({row["attempt_token"] for row in claimed}) == 2
    for row in claimed:
        stored = action(sql, row["id"])
        assert stored["claimed_by"] == "w" and stored["dispatched_at"] is None
        assert stored["started_at"] == "2026-01-02T03:04:05+00:00"  # what `also` set
        assert sql.execute(  # the claim's own time is updated_at
            "select lease_expires_at = updated_at + interval '90 seconds' from actions where id = %s", (row["id"],)
        ).fetchone() == (True,)
    assert action(sql, second)["status"] == "approved"  # not named, not claimed


@pytest.mark.parametrize(
    ("worker", "lease", "also"),
    [
        ("", 60, {}),
        ("w", 0, {}),
        ("w", 60, {"status": "succeeded"}),
        ("w", 60, {"attempt_token": str(uuid.uuid4())}),
        ("w", 60, {"id": str(uuid.uuid4())}),
    ],
    ids=["no worker", "no lease", "its status", "its token", "its key"],
)
def test_a_claim_needs_a_worker_and_a_lease_and_sets_no_lease_column_of_the_callers(
    db: Database, sql: psycopg.Connection, worker: str, lease: float, also: dict[str, Any]
) -> None:
    action_id = submit(db, "refused claim")
    with pytest.raises(InvalidInput):
        db.call("lease_claim", queue="actions", keys=[{"id": action_id}], worker=worker, lease_seconds=lease, also=also)
    assert action(sql, action_id)["status"] == "approved"


def test_only_the_current_attempt_holds_the_lock(db: Database, sql: psycopg.Connection) -> None:
    action_id = submit(db, "locked")
    [row] = claim(db, action_id)
    key = {"id": action_id}
    assert db.call("lease_lock", queue="actions", key=key, attempt_token=row["attempt_token"]) == {"locked": True}
    with pytest.raises(NotFound, match="no action"):
        db.call("lease_lock", queue="actions", key={"id": str(uuid.uuid4())}, attempt_token=row["attempt_token"])
    with pytest.raises(StaleAttempt, match=f"attempt on action {action_id} was superseded") as stale:
        db.call("lease_lock", queue="actions", key=key, attempt_token=str(uuid.uuid4()))
    assert stale.value.details == {"status": "running"}
    db.call(
        "finish_action",
        id=action_id,
        attempt_token=row["attempt_token"],
        outcome="succeeded",
        result={},
        error=None,
        retry_in_seconds=None,
        count_attempt=True,
    )
    with pytest.raises(StaleAttempt) as finished:  # the right token, but the attempt is over
        db.call("lease_lock", queue="actions", key=key, attempt_token=row["attempt_token"])
    assert finished.value.details == {"status": "succeeded"}


def test_renewing_and_marking_dispatched_need_the_current_token(db: Database, sql: psycopg.Connection) -> None:
    action_id = submit(db, "renewed")
    [row] = claim(db, action_id, lease=60)
    key, other = {"id": action_id}, str(uuid.uuid4())
    before = action(sql, action_id)
    with pytest.raises(StaleAttempt):
        db.call("lease_renew", queue="actions", key=key, attempt_token=other, lease_seconds=600)
    with pytest.raises(StaleAttempt):
        db.call("lease_dispatched", queue="actions", key=key, attempt_token=other)
    with pytest.raises(NotFound):
        db.call("lease_dispatched", queue="actions", key={"id": str(uuid.uuid4())}, attempt_token=other)
    with pytest.raises(InvalidInput):
        db.call("lease_renew", queue="actions", key=key, attempt_token=row["attempt_token"], lease_seconds=0)
    assert action(sql, action_id) == before  # nothing a refused call could change

    advance_clock(sql, 30)
    renewed = db.call("lease_renew", queue="actions", key=key, attempt_token=row["attempt_token"], lease_seconds=600)
    stored = action(sql, action_id)
    assert renewed["lease_expires_at"] == stored["lease_expires_at"]
    assert sql.execute(
        "select lease_expires_at = updated_at + interval '600 seconds', updated_at > %s::timestamptz "
        "from actions where id = %s",
        (before["updated_at"], action_id),
    ).fetchone() == (True, True)
    assert db.call("lease_dispatched", queue="actions", key=key, attempt_token=row["attempt_token"]) == {
        "dispatched": True
    }
    stored = action(sql, action_id)
    assert stored["dispatched_at"] is not None and stored["dispatched_at"] == stored["updated_at"]


def test_the_expiry_scan_finds_lost_leases_oldest_first_and_skips_rows_held_elsewhere(
    db: Database, sql: psycopg.Connection, database_url: str
) -> None:
    older, newer, live = (submit(db, name) for name in ("older", "newer", "live"))
    claim(db, older, lease=10)
    claim(db, newer, lease=20)
    claim(db, live, lease=3600)
    advance_clock(sql, 30)
    assert [row["id"] for row in db.call("lease_expired", queue="actions", limit=10)] == [older, newer]
    assert [row["id"] for row in db.call("lease_expired", queue="actions", limit=1)] == [older]
    with psycopg.connect(database_url) as finishing:  # an attempt finishing right now holds its row
        finishing.execute("select 1 from actions where id = %s for update", (older,))
        assert [row["id"] for row in db.call("lease_expired", queue="actions", limit=10)] == [newer]
    assert len(db.call("lease_expired", queue="actions", limit=10)) == 2


@pytest.fixture
def campaign(db: Database) -> str:
    """A planned email campaign of three batches of one recipient each."""
    campaign_id = submit(db, "a campaign", kind="email.campaign")
    recipients = [{"email": f"{name}@example.com"} for name in ("ann", "ben", "cy")]
    db.call(
        "plan_email_campaign",
        campaign_id=campaign_id,
        recipients=recipients,
        batch_size=1,
        daily_limit=300,
        reserve=20,
        time_zone="UTC",
    )
    return campaign_id


def test_campaign_batches_are_keyed_by_campaign_and_batch_number(
    db: Database, sql: psycopg.Connection, campaign: str
) -> None:
    second = {"campaign_id": campaign, "batch_no": 2}
    [row] = db.call("lease_claim", queue="campaign_batches", keys=[second], worker="w", lease_seconds=60)
    assert (row["campaign_id"], row["batch_no"], row["status"]) == (campaign, 2, "sending")
    statuses = dict(sql.execute("select batch_no, status from campaign_batches where campaign_id = %s", (campaign,)))
    assert statuses == {1: "pending", 2: "sending", 3: "pending"}

    token = row["attempt_token"]
    assert db.call("lease_lock", queue="campaign_batches", key=second, attempt_token=token) == {"locked": True}
    third = {"campaign_id": campaign, "batch_no": 3}
    with pytest.raises(StaleAttempt, match=f"attempt on campaign batch {campaign}/3 was superseded"):
        db.call("lease_lock", queue="campaign_batches", key=third, attempt_token=token)
    with pytest.raises(NotFound, match=f"no campaign batch {campaign}/9"):
        db.call(
            "lease_lock", queue="campaign_batches", key={"campaign_id": campaign, "batch_no": 9}, attempt_token=token
        )
    db.call("lease_renew", queue="campaign_batches", key=second, attempt_token=token, lease_seconds=5)
    advance_clock(sql, 10)
    [expired] = db.call("lease_expired", queue="campaign_batches", limit=10)
    assert (expired["campaign_id"], expired["batch_no"]) == (campaign, 2)


def test_the_lease_functions_run_with_the_callers_rights(sql: psycopg.Connection) -> None:
    rows = sql.execute(
        "select proname, prosecdef from pg_proc "
        "where pronamespace = 'public'::regnamespace and proname like 'lease\\_%'"
    ).fetchall()
    assert {name for name, _ in rows} >= {
        "lease_claim",
        "lease_lock",
        "lease_renew",
        "lease_dispatched",
        "lease_expired",
    }
    assert [name for name, definer in rows if definer] == []


@pytest.fixture
def rest(supabase: SupabaseShape, supabase_db: str) -> Iterator[Database]:
    """Supabase's REST API (tests/postgrest_on_supabase.py): every call as service_role."""
    server = PostgrestOnSupabase(supabase.authenticator_uri(supabase_db))
    database = Database(SupabaseTransport(server.url, SERVICE_KEY))
    yield database
    database.close()
    server.close()


def test_over_supabases_rest_api_they_reach_the_queues_and_nothing_else(rest: Database) -> None:
    assert rest.call("lease_expired", queue="actions", limit=10) == []
    with pytest.raises(InvalidInput, match="audit_log is not a lease queue"):
        rest.call("lease_expired", queue="audit_log", limit=10)
    with pytest.raises(InvalidInput, match="job_runs is not a lease queue"):
        rest.call("lease_renew", queue="job_runs", key={"id": 1}, attempt_token=str(uuid.uuid4()), lease_seconds=60)


# ------------------------------------------------------------------------------------------------
# The lifecycle once per queue, through each family's own functions (what Python calls).
# ------------------------------------------------------------------------------------------------
Key = dict[str, Any]
RECOVER_BATCHES = {"actor": "t", "limit": 10, "daily_limit": 300, "reserve": 20, "time_zone": "UTC"}


class Family:
    """One queue as its family's functions drive it; `lost` is what a lease lost after the attempt
    was marked dispatched becomes (the daily report has no status for it: its next send says it may
    repeat the post)."""

    queue: str
    lost: str

    def make(self, db: Database, sql: psycopg.Connection) -> list[Key]:
        """Two due items."""
        raise NotImplementedError

    def claim(self, db: Database, keys: list[Key]) -> dict[str, dict[str, Any]]:
        """The family's claim: the claimed rows by key (key_text)."""
        raise NotImplementedError

    def renew(self, db: Database, key: Key, token: str, seconds: float) -> None:
        db.call("lease_renew", queue=self.queue, key=key, attempt_token=token, lease_seconds=seconds)

    def dispatched(self, db: Database, key: Key, token: str) -> None:
        raise NotImplementedError

    def before_recovery(self, db: Database, sql: psycopg.Connection, key: Key) -> None:
        """What happens meanwhile for a lost dispatched attempt to end as `lost`."""

    def recover(self, db: Database) -> dict[str, str]:
        """The family's recovery: key_text → what each lost lease became."""
        raise NotImplementedError

    def finish(self, db: Database, key: Key, token: str) -> None:
        raise NotImplementedError


def key_text(key: Key) -> str:
    return "/".join(str(value) for value in key.values())


class Actions(Family):
    queue, lost = "actions", "unknown"

    def make(self, db: Database, sql: psycopg.Connection) -> list[Key]:
        return [{"id": submit(db, name)} for name in ("one", "two")]

    def claim(self, db: Database, keys: list[Key]) -> dict[str, dict[str, Any]]:
        rows = db.call("claim_actions", worker="w", lease_seconds=60, limit=10)
        return {row["id"]: row for row in rows}

    def renew(self, db: Database, key: Key, token: str, seconds: float) -> None:
        db.call("renew_action_lease", id=key["id"], attempt_token=token, lease_seconds=seconds)

    def dispatched(self, db: Database, key: Key, token: str) -> None:
        db.call("mark_dispatched", id=key["id"], attempt_token=token)

    def recover(self, db: Database) -> dict[str, str]:
        recovered = db.call("recover_expired_leases", actor="t", limit=10)["recovered"]
        return {row["id"]: row["status"] for row in recovered}

    def finish(self, db: Database, key: Key, token: str) -> None:
        db.call(
            "finish_action",
            id=key["id"],
            attempt_token=token,
            outcome="succeeded",
            result={},
            error=None,
            retry_in_seconds=None,
            count_attempt=True,
        )


class Notifications(Family):
    queue, lost = "discord_notifications", "unknown"

    def make(self, db: Database, sql: psycopg.Connection) -> list[Key]:
        keys = []
        for name in ("one", "two"):
            action_id = submit(db, name, risk="MEDIUM")
            [(notification_id,)] = sql.execute(
                "select id from discord_notifications where action_id = %s", (action_id,)
            ).fetchall()
            keys.append({"id": notification_id})
        return keys

    def claim(self, db: Database, keys: list[Key]) -> dict[str, dict[str, Any]]:
        rows = db.call("claim_notifications", worker="w", lease_seconds=60, limit=10)
        return {str(row["id"]): row for row in rows if row["kind"] == "announce"}

    def dispatched(self, db: Database, key: Key, token: str) -> None:
        db.call("mark_notification_dispatched", id=key["id"], attempt_token=token)

    def before_recovery(self, db: Database, sql: psycopg.Connection, key: Key) -> None:
        """Its action was cancelled while the post was out: nothing is left to announce."""
        [(action_id,)] = sql.execute("select action_id from discord_notifications where id = %s", (key["id"],))
        db.call("cancel_action", id=action_id, actor="t", reason="no longer needed", request_id=None)

    def recover(self, db: Database) -> dict[str, str]:
        recovered = db.call("recover_notification_leases", actor="t", limit=10)["recovered"]
        return {str(row["id"]): row["status"] for row in recovered}

    def finish(self, db: Database, key: Key, token: str) -> None:
        db.call("fail_notification", id=key["id"], attempt_token=token, error="x")


class Batches(Family):
    queue, lost = "campaign_batches", "unknown"

    def make(self, db: Database, sql: psycopg.Connection) -> list[Key]:
        campaign_id = submit(db, "a campaign", kind="email.campaign")
        db.call(
            "plan_email_campaign",
            campaign_id=campaign_id,
            recipients=[{"email": "ann@example.com"}, {"email": "ben@example.com"}],
            batch_size=1,
            daily_limit=300,
            reserve=20,
            time_zone="UTC",
        )
        return [{"campaign_id": campaign_id, "batch_no": n} for n in (1, 2)]

    def claim(self, db: Database, keys: list[Key]) -> dict[str, dict[str, Any]]:
        rows = db.call(
            "claim_campaign_batches", worker="w", lease_seconds=60, limit=10, time_zone="UTC", campaign_id=None
        )
        return {f"{row['campaign_id']}/{row['batch_no']}": row for row in rows}

    def renew(self, db: Database, key: Key, token: str, seconds: float) -> None:
        db.call("renew_campaign_batch_lease", **key, attempt_token=token, lease_seconds=seconds)

    def dispatched(self, db: Database, key: Key, token: str) -> None:
        emails = ["ann@example.com", "ben@example.com"]
        db.call("campaign_recipients_sending", **key, attempt_token=token, emails=emails)

    def recover(self, db: Database) -> dict[str, str]:
        recovered = db.call("recover_campaign_batches", **RECOVER_BATCHES)["recovered"]
        return {f"{row['campaign_id']}/{row['batch_no']}": row["status"] for row in recovered}

    def finish(self, db: Database, key: Key, token: str) -> None:
        db.call(
            "finish_campaign_batch",
            **key,
            attempt_token=token,
            rest="later",
            retry_in_seconds=0,
            error=None,
            daily_limit=300,
            reserve=20,
            time_zone="UTC",
        )


class ReportSends(Family):
    queue, lost = "daily_reports", "sending, marked maybe_posted"

    def make(self, db: Database, sql: psycopg.Connection) -> list[Key]:
        days = ["2026-11-29", "2026-11-30"]
        for day in days:
            db.call("store_daily_report", day=day, body={"day": day}, chart_base64=None)
        return [{"day": day} for day in days]

    def claim(self, db: Database, keys: list[Key]) -> dict[str, dict[str, Any]]:
        """A send is claimed by its day; a lost lease is taken over by the next claim."""
        claims = {key["day"]: db.call("claim_daily_report_send", **key, worker="w", lease_seconds=60) for key in keys}
        return {day: claim for day, claim in claims.items() if claim["claimed"]}

    def dispatched(self, db: Database, key: Key, token: str) -> None:
        db.call("mark_daily_report_dispatched", **key, attempt_token=token)

    def recover(self, db: Database) -> dict[str, str]:
        return {}  # lazily, by the next claim

    def finish(self, db: Database, key: Key, token: str) -> None:
        db.call("release_daily_report_send", **key, attempt_token=token, error="x", maybe_posted=False)


def stored(sql: psycopg.Connection, queue: str, key: Key) -> dict[str, Any]:
    where = " and ".join(f"{column} = %s" for column in key)
    return sql.execute(f"select to_jsonb(t) from {queue} t where {where}", tuple(key.values())).fetchone()[0]


@pytest.mark.parametrize("family", [Actions(), Notifications(), Batches(), ReportSends()], ids=lambda f: f.queue)
def test_every_queue_claims_renews_recovers_and_fences_old_attempts(
    db: Database, sql: psycopg.Connection, family: Family
) -> None:
    dispatched, quiet = family.make(db, sql)
    claimed = family.claim(db, [dispatched, quiet])
    assert set(claimed) == {key_text(dispatched), key_text(quiet)}
    tokens = {text: row["attempt_token"] for text, row in claimed.items()}
    first, second = tokens[key_text(dispatched)], tokens[key_text(quiet)]
    running = stored(sql, family.queue, dispatched)["status"]
    assert running in {"running", "sending"} and stored(sql, family.queue, dispatched)["attempts"] == 1

    # a renewed lease outlasts its first term: nothing to recover, nothing to claim
    family.renew(db, dispatched, first, 600)
    family.renew(db, quiet, second, 600)
    advance_clock(sql, 120)
    assert family.recover(db) == {} and family.claim(db, [dispatched, quiet]) == {}
    family.dispatched(db, dispatched, first)
    assert stored(sql, family.queue, dispatched)["dispatched_at"] is not None

    # both leases run out: the dispatched attempt may have reached the outside world
    advance_clock(sql, 600)
    family.before_recovery(db, sql, dispatched)
    recovered = family.recover(db)
    if family.lost == "unknown":
        assert recovered[key_text(dispatched)] == "unknown"
    again = family.claim(db, [dispatched, quiet])
    if family.lost == "unknown":
        assert set(again) == {key_text(quiet)}  # never run again by a machine
        assert stored(sql, family.queue, dispatched)["status"] == "unknown"
    else:  # a report send: taken over, and the post says it may repeat one
        assert set(again) == {key_text(dispatched), key_text(quiet)}
        assert (again[key_text(dispatched)]["maybe_posted"], again[key_text(quiet)]["maybe_posted"]) == (True, False)
    assert stored(sql, family.queue, quiet)["attempts"] == 2  # the quiet one, claimed again
    third = again[key_text(quiet)]["attempt_token"]
    assert third not in (first, second)

    # fencing: an attempt that was superseded can do nothing more
    for key, token in ((dispatched, first), (quiet, second)):
        before = stored(sql, family.queue, key)
        with pytest.raises(StaleAttempt):
            family.renew(db, key, token, 600)
        with pytest.raises(StaleAttempt):
            family.dispatched(db, key, token)
        with pytest.raises(StaleAttempt):
            family.finish(db, key, token)
        assert stored(sql, family.queue, key) == before
    family.finish(db, quiet, third)  # the current attempt still can
