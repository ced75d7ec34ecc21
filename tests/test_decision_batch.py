"""The API's group commit (app.approvals.batch, schema.sql `decide_actions`): decisions that arrive
together share one call and one commit, and each still gets exactly the answer a call of its own
would have given. One refused decision never fails, delays or changes the others."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.approvals.batch import MAX_BATCH, DecisionBatch
from app.approvals.queue import ApprovalQueue
from app.core.database import AsyncDatabase, Database, open_async
from app.core.errors import Conflict, DatabaseError, Gone, InvalidInput, NotFound
from app.core.models import ActionRequest, DecisionRequest
from app.core.settings import Settings
from tests.conftest import advance_clock
from tests.test_api_workers import ACTION  # a MEDIUM note: it waits for a person


def pending(settings: Settings, db: Database, count: int) -> list[UUID]:
    queue = ApprovalQueue(db, settings)
    return [queue.submit(ActionRequest(**ACTION), actor="test").id for _ in range(count)]


def item(action_id: UUID | str, decision: str = "approve", **extra: Any) -> dict[str, Any]:
    return {"id": str(action_id), "decision": decision, "actor": "api:ann", "channel": "api", **extra}


def audit(sql: psycopg.Connection, ids: list[UUID]) -> list[tuple[UUID, str]]:
    rows = sql.execute(
        "select action_id, actor from audit_log where event = 'decided' and action_id = any(%s) order by id", (ids,)
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def test_each_decision_of_a_batch_is_answered_in_its_place_and_a_refusal_changes_nothing(
    settings: Settings, db: Database, sql: psycopg.Connection
) -> None:
    ids = pending(settings, db, 4)
    sql.execute("select decide_action(%s, 'approve', 'api:bob', null, null, null, null, p_channel => 'api')", (ids[1],))
    missing = uuid4()
    answers = sql.execute(
        "select decide_actions(%s)",
        (
            Jsonb(
                [
                    item(ids[0]),
                    item(ids[1]),  # decided already
                    item(missing),
                    item(ids[2], "reject"),  # a rejection needs a reason
                    item(ids[3], "reject", reason="not now"),
                    item(ids[3]),  # the same action again, after its rejection
                    item("not-a-uuid"),
                ]
            ),
        ),
    ).fetchone()[0]  # type: ignore[index]
    assert [next(iter(answer)) for answer in answers] == [
        "action",
        "error",
        "error",
        "error",
        "action",
        "error",
        "error",
    ]
    assert answers[0]["action"]["status"] == "approved" and answers[0]["action"]["id"] == str(ids[0])
    assert answers[1]["error"]["sqlstate"] == "OD409" and "api:bob" in answers[1]["error"]["message"]
    assert answers[2]["error"]["sqlstate"] == "OD404"
    assert answers[3]["error"] == {"sqlstate": "OD422", "message": "a rejection needs a reason", "detail": None}
    assert answers[4]["action"]["status"] == "rejected" and answers[4]["action"]["rejection_reason"] == "not now"
    assert answers[5]["error"]["sqlstate"] == "OD409"
    assert answers[6]["error"]["sqlstate"] == "22P02"
    statuses = dict(sql.execute("select id, status from actions where id = any(%s)", (ids,)).fetchall())
    assert statuses == {ids[0]: "approved", ids[1]: "approved", ids[2]: "pending", ids[3]: "rejected"}
    assert sorted(audit(sql, ids)) == sorted([(ids[1], "api:bob"), (ids[0], "api:ann"), (ids[3], "api:ann")])


def test_a_batch_takes_its_rows_in_id_order_whatever_order_they_came_in(
    settings: Settings, db: Database, sql: psycopg.Connection
) -> None:
    """Two batches deciding the same actions then wait for each other instead of deadlocking."""
    ids = pending(settings, db, 6)
    given = [ids[i] for i in (4, 0, 5, 2, 1, 3)]
    sql.execute("select decide_actions(%s)", (Jsonb([item(action_id) for action_id in given]),))
    assert [action_id for action_id, _ in audit(sql, ids)] == sorted(ids, key=str)


def test_a_batch_is_bounded_where_the_sender_bounds_it(sql: psycopg.Connection) -> None:
    answers = sql.execute("select decide_actions(%s)", (Jsonb([item(uuid4()) for _ in range(MAX_BATCH)]),)).fetchone()
    assert answers is not None and [a["error"]["sqlstate"] for a in answers[0]] == ["OD404"] * MAX_BATCH
    too_many = [item(uuid4()) for _ in range(MAX_BATCH + 1)]
    with pytest.raises(psycopg.Error, match="up to 24 decisions"):
        sql.execute("select decide_actions(%s)", (Jsonb(too_many),))
    with pytest.raises(psycopg.Error, match="up to 24 decisions"):
        sql.execute("select decide_actions(%s)", (Jsonb({"id": str(uuid4())}),))


class Counting:
    """The batch's database calls, counted (the real AsyncDatabase underneath)."""

    def __init__(self, adb: AsyncDatabase) -> None:
        self.adb = adb
        self.sizes: list[int] = []

    def call(self, function: str, **params: Any) -> Any:
        self.sizes.append(len(params["decisions"]))
        return self.adb.call(function, **params)


async def decide_all(batch: DecisionBatch, decisions: list[tuple[UUID, str, str | None]]) -> list[Any]:
    """The first decision arrives alone; the others while its call is in the database."""

    async def one(action_id: UUID, decision: str, reason: str | None) -> Any:
        return await batch.decide(
            action_id, decision=decision, actor="api:ann", reason=reason, channel="api", request_id=f"r-{action_id}"
        )

    first = asyncio.ensure_future(one(*decisions[0]))
    for _ in range(2):  # the request queues it, then the sender takes it into a call
        await asyncio.sleep(0)
    rest = await asyncio.gather(*(one(*d) for d in decisions[1:]), return_exceptions=True)
    return [*(await asyncio.gather(first, return_exceptions=True)), *rest]


def test_concurrent_decisions_share_calls_and_each_gets_its_own_answer(
    settings: Settings, db: Database, sql: psycopg.Connection
) -> None:
    ids = pending(settings, db, 40)
    sql.execute("select decide_action(%s, 'approve', 'api:bob', null, null, null, null, p_channel => 'api')", (ids[7],))
    advance_clock(sql, 0)
    decisions: list[tuple[UUID, str, str | None]] = [(action_id, "approve", None) for action_id in ids]
    decisions[3] = (ids[3], "reject", "too pushy")
    decisions[11] = (ids[11], "reject", None)  # no reason: refused
    decisions.append((uuid4(), "approve", None))

    async def scenario() -> tuple[list[Any], list[int]]:
        adb = await open_async(db)
        assert adb is not None
        counting = Counting(adb)
        try:
            answers = await decide_all(DecisionBatch(counting), decisions)  # type: ignore[arg-type]
        finally:
            await adb.close()
        return answers, counting.sizes

    answers, sizes = asyncio.run(scenario())
    # the first decision goes alone and at once; the rest queued meanwhile and share calls
    assert sizes == [1, MAX_BATCH, len(decisions) - 1 - MAX_BATCH]
    for (action_id, decision, _), answer in zip(decisions, answers, strict=True):
        if action_id == ids[7]:
            assert isinstance(answer, Conflict) and "api:bob" in answer.message
        elif action_id == ids[11]:
            assert isinstance(answer, InvalidInput) and "reason" in answer.message
        elif action_id not in ids:
            assert isinstance(answer, NotFound)
        else:
            assert isinstance(answer, dict) and answer["id"] == str(action_id)
            assert answer["status"] == ("rejected" if decision == "reject" else "approved")
    decided = sql.execute(
        "select count(*), count(distinct action_id), count(*) filter (where request_id = 'r-' || action_id) "
        "from audit_log where event = 'decided' and actor = 'api:ann'"
    ).fetchone()
    assert decided == (38, 38, 38)


def test_an_expired_action_in_a_batch_is_gone_and_the_others_stand(
    settings: Settings, db: Database, sql: psycopg.Connection
) -> None:
    old = pending(settings, db, 1)
    advance_clock(sql, 73 * 3600)
    fresh = pending(settings, db, 1)

    async def scenario() -> list[Any]:
        adb = await open_async(db)
        assert adb is not None
        try:
            return await decide_all(DecisionBatch(adb), [(old[0], "approve", None), (fresh[0], "approve", None)])
        finally:
            await adb.close()

    expired, approved = asyncio.run(scenario())
    assert isinstance(expired, Gone)
    assert isinstance(approved, dict) and approved["status"] == "approved"


class Failing:
    def __init__(self, error: Exception | None = None, answer: Any = None) -> None:
        self.error, self.answer = error, answer
        self.calls = 0

    async def call(self, function: str, **params: Any) -> Any:
        self.calls += 1
        for _ in range(3):  # in the database a while: the other decisions queue meanwhile
            await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.answer


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        (Failing(DatabaseError("the database went away")), "the database went away"),
        (Failing(answer=[]), "decide_actions answered"),  # fewer answers than asked
        (Failing(answer={"error": "nonsense"}), "decide_actions answered"),
    ],
)
def test_a_call_that_fails_as_a_whole_fails_each_of_its_decisions(database: Failing, expected: str) -> None:
    """Its transaction decided nothing: every caller hears so, none waits forever, and the next
    decisions get a call of their own."""

    async def scenario() -> list[Any]:
        batch = DecisionBatch(database)  # type: ignore[arg-type]
        return await decide_all(batch, [(uuid4(), "approve", None) for _ in range(3)])

    answers = asyncio.run(scenario())
    assert all(isinstance(answer, DatabaseError) and expected in answer.message for answer in answers)
    assert database.calls == 2  # one alone at once, then the two that queued meanwhile


def test_an_answer_that_is_no_action_is_an_error_for_its_caller_only() -> None:
    database = Failing(answer=[{"action": {"id": "a"}}])

    async def scenario() -> list[Any]:
        return await decide_all(DecisionBatch(database), [(uuid4(), "approve", None)])  # type: ignore[arg-type]

    assert asyncio.run(scenario()) == [{"id": "a"}]
    database.answer = [{"neither": True}]
    (answer,) = asyncio.run(scenario())
    assert isinstance(answer, DatabaseError)


def test_the_queue_sends_only_one_call_decisions_through_the_batch(settings: Settings, db: Database) -> None:
    queue = ApprovalQueue(db, settings.model_copy(update={"approval_pin": "4321"}))

    async def scenario() -> None:
        batch = DecisionBatch(Failing(answer=[]))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="needs decide_with_pin"):
            await queue.decide_now(
                batch, uuid4(), DecisionRequest(decision="approve", decided_by="ann"), actor="api:ann", channel="api"
            )

    asyncio.run(scenario())


class Immediate:
    """A database that answers without waiting: a sender finishes in the step that sent."""

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, function: str, **params: Any) -> Any:
        self.calls += 1
        return [{"action": {"id": item["id"]}} for item in params["decisions"]]


def test_a_decision_queued_as_the_sender_finishes_still_goes() -> None:
    """A caller that decides again as soon as its first answer came back queues while the sender
    that answered has finished but not yet been cleaned up: it must get a sender all the same."""
    database = Immediate()
    batch = DecisionBatch(database)  # type: ignore[arg-type]
    first, second = uuid4(), uuid4()

    async def one_after_the_other() -> list[Any]:
        answers = []
        for action_id in (first, second):
            answers.append(
                await batch.decide(
                    action_id, decision="approve", actor="api:ann", reason=None, channel="api", request_id=None
                )
            )
        return answers

    async def scenario() -> list[Any]:
        caller = asyncio.ensure_future(one_after_the_other())
        for _ in range(20):  # loop steps, not wall time: a stranded decision never finishes
            await asyncio.sleep(0)
        assert caller.done(), "the second decision was queued with no sender to take it"
        return caller.result()

    assert asyncio.run(scenario()) == [{"id": str(first)}, {"id": str(second)}]
    assert database.calls == 2


class Hanging:
    async def call(self, function: str, **params: Any) -> Any:
        await asyncio.Event().wait()  # never answers


def test_when_the_loop_stops_every_waiting_decision_is_cancelled_not_stranded() -> None:
    async def scenario() -> list[Any]:
        batch = DecisionBatch(Hanging())  # type: ignore[arg-type]

        def decide() -> asyncio.Future[Any]:
            return asyncio.ensure_future(
                batch.decide(uuid4(), decision="approve", actor="api:ann", reason=None, channel="api", request_id=None)
            )

        callers = [decide()]
        for _ in range(2):  # the first is in the database, the next two queue behind it
            await asyncio.sleep(0)
        callers += [decide(), decide()]
        await asyncio.sleep(0)
        for sender in list(batch._tasks):
            sender.cancel()
        for _ in range(10):  # loop steps, not wall time
            await asyncio.sleep(0)
        assert all(caller.done() for caller in callers), "a decision was left waiting"
        return [caller.exception() if not caller.cancelled() else asyncio.CancelledError() for caller in callers]

    assert [type(answer) for answer in asyncio.run(scenario())] == [asyncio.CancelledError] * 3
