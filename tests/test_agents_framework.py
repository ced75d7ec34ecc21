"""The agent framework: a failed model call ends the run cleanly, recorded and with nothing
submitted; a run's actions are submitted whole or not at all; only the agent's own kinds get out;
the prompt's fences and the reviewers' guidance; the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import psycopg
import pytest
from pydantic import SecretStr

from agents import REGISTRY
from agents.drafting import email_html, search_words, unsourced_contact_points
from agents.framework import AgentEnv, Refused, Source
from agents.prompt import DataBlock, fenced, guidance
from agents.run import FEEDBACK_PER_KIND, run
from agents.sales import SalesAgent, SalesProposal
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.clients.claude_ledger import claude_client
from app.core.config_check import check
from app.core.cron import parse_crontab
from app.core.database import Database
from app.core.errors import Conflict, DatabaseError
from app.core.models import ActionRequest, DecisionRequest, FeedbackItem, Impact, Tier
from app.core.settings import Settings
from app.memory.store import MemoryStore
from app.schedule.jobs import agent_job
from app.schedule.runs import Firing, Job, Schedule
from scheduler import main
from tests.agent_world import World, agent_world
from tests.fake_http import Recorded, Reply
from tests.test_claude import answer, api_error


@pytest.fixture
def world(db: Database, database_url: str, sql: psycopg.Connection, tmp_path: Path) -> Iterator[World]:
    with agent_world(db, database_url, sql, tmp_path) as made:
        yield made


def a_stale_deal(world: World) -> str:
    return world.stale_deal("Acme renewal", world.contact("ann@acme.example", "Ann"))


def held(world: World) -> Any:
    def respond(request: Recorded) -> Reply:
        world.claude.server.release.wait(10)  # longer than the client waits
        return Reply(200, answer('{"proposals": []}'))

    return respond


# --- a failed model call ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("failure", "error", "calls", "requests"),
    [
        (
            "not the schema",
            "anthropic: SalesPlan: the answer did not fit the schema, even after a repair request",
            2,
            2,
        ),
        ("timeout", "anthropic: timed out", 1, 1),
        ("overloaded", "anthropic: HTTP 529 overloaded_error: Overloaded", 1, 2),  # retried once, then given up
    ],
)
def test_a_failed_model_call_ends_the_run_cleanly_recorded_with_nothing_submitted(
    world: World, failure: str, error: str, calls: int, requests: int
) -> None:
    a_stale_deal(world)
    overrides: dict[str, Any] = {"anthropic_max_attempts": 2}
    if failure == "not the schema":
        world.answer("Sure! I emailed everyone for you.", input_tokens=500, output_tokens=20)
        world.answer('{"proposals": [{"email": "no ref"}]}', input_tokens=600, output_tokens=30)
    elif failure == "timeout":
        world.claude.replies.append(held(world))
        overrides = {"anthropic_max_attempts": 1, "anthropic_timeout_seconds": 0.3}
    else:
        world.claude.default = api_error(529, "overloaded_error", "Overloaded")

    report = world.run("sales", **overrides)

    assert report.outcome == "failed" and report.error == error and report.actions == []
    assert report.retryable is (failure != "not the schema")  # a timeout or an overload may pass
    assert world.actions() == []
    [row] = world.runs()
    assert (row["outcome"], row["error"], row["proposals"]) == ("failed", error, 0) and row["finished_at"]
    outcomes = [o for (o,) in world.sql.execute("select outcome from llm_calls order by id").fetchall()]
    assert len(outcomes) == calls and len(world.claude.messages) == requests
    assert row["tokens"] == (1150 if failure == "not the schema" else 0)
    if failure == "overloaded":
        assert world.sleeps  # retried after a backoff (recorded, not slept)


def test_a_run_with_nothing_to_do_asks_no_model(world: World) -> None:
    report = world.run("sales")
    assert report.outcome == "ok" and report.sources == 0 and world.claude.messages == []
    assert world.runs()[0]["outcome"] == "ok"


# --- whole or nothing -----------------------------------------------------------------------------
def test_a_runs_actions_are_submitted_whole_or_not_at_all(
    db: Database, settings: Settings, sql: psycopg.Connection
) -> None:
    queue = ApprovalQueue(db, settings)

    def note(n: int) -> dict[str, Any]:
        return queue.prepare(
            ActionRequest(
                agent="sales",
                kind="note.record",
                summary=f"note {n}",
                payload={"body": f"body {n}"},
                dedupe_key=f"sales/deal-1/d/{n}",
            )
        )

    started = db.call("start_agent_run", agent="sales", trigger="test")
    broken = {**note(2), "risk_level": "BOGUS"}  # the database refuses it after the first went in
    with pytest.raises(DatabaseError):
        db.call(
            "submit_agent_actions",
            run_id=started["id"],
            items=[note(1), broken],
            call_ids=[],
            actor="agent:sales",
            request_id=None,
            skips=[],
            refused=[],
        )
    assert sql.execute("select count(*) from actions").fetchone() == (0,)
    assert sql.execute("select outcome from agent_runs").fetchone() == ("running",)

    done = db.call(
        "submit_agent_actions",
        run_id=started["id"],
        items=[note(1), note(1)],
        call_ids=[],
        actor="agent:sales",
        request_id=None,
        skips=[],
        refused=[],
    )
    assert [r["duplicate"] for r in done["results"]] == [False, True]  # same key: one action
    assert (done["run"]["outcome"], done["run"]["proposals"]) == ("ok", 2)
    with pytest.raises(Conflict):  # a finished run submits nothing more
        db.call(
            "submit_agent_actions",
            run_id=started["id"],
            items=[note(3)],
            call_ids=[],
            actor="agent:sales",
            request_id=None,
            skips=[],
            refused=[],
        )
    assert sql.execute("select count(*) from actions").fetchone() == (1,)

    sql.execute("update actions set status = 'succeeded'")  # done: no longer open
    overlapping = db.call("start_agent_run", agent="sales", trigger="test")
    again = db.call(
        "submit_agent_actions",
        run_id=overlapping["id"],
        items=[note(1)],
        call_ids=[],
        actor="agent:sales",
        request_id=None,
        skips=[],
        refused=[],
    )
    assert again["results"][0]["duplicate"] is True  # the same input, handled already
    assert sql.execute("select count(*) from actions").fetchone() == (1,)


class WrongKindSales(SalesAgent):
    """A broken agent: builds an action of a kind that is not its own."""

    def build(self, env: AgentEnv, source: Source[Any], proposal: SalesProposal, briefing: Any) -> list[ActionRequest]:
        return [self.request(source, "log", kind="webhook.post", summary="x", reasoning="", payload={"event": "x"})]


def test_an_action_of_a_kind_the_agent_does_not_have_fails_the_run(world: World) -> None:
    deal = a_stale_deal(world)
    world.answer({"proposals": [{"ref": f"deal-{deal}", "email": {"subject": "s", "body": "b"}}]})
    clients = Clients(world.settings, world.db, sleep=world.sleeps.append)
    planner = claude_client(world.settings, world.db, sleep=world.sleeps.append)
    queue = ApprovalQueue(world.db, world.settings)
    env = AgentEnv(
        world.settings, world.db, queue, clients, MemoryStore(world.db, world.settings), lambda: planner, queue.clock()
    )
    try:
        with pytest.raises(RuntimeError, match=r"sales built a webhook\.post action"):
            run(WrongKindSales(), env, trigger="test")
    finally:
        planner.close()
        clients.close()
    assert world.actions() == [] and world.runs()[0]["outcome"] == "failed"


# --- the prompt -----------------------------------------------------------------------------------
def test_an_email_rejection_reaches_the_prompt_past_many_newer_task_edits(world: World) -> None:
    queue = ApprovalQueue(world.db, world.settings)
    email = queue.submit(
        ActionRequest(
            agent="sales",
            kind="email.send",
            summary="Follow-up to Ann",
            impact=Impact(recipients=1),
            suggested_tier=Tier.MEDIUM,
            payload={"to": {"email": "ann@acme.example"}, "subject": "Hi", "html": "<p>Hi</p>"},
        ),
        actor="agent:sales",
    )
    queue.decide(
        email.id,
        DecisionRequest(decision="reject", reason="Never promise a call-back time"),
        actor="ann",
        channel="link",
    )
    for n in range(15):  # newer, and many more than the prompt takes
        task = queue.submit(
            ActionRequest(
                agent="sales",
                kind="hubspot.task",
                summary=f"Call {n}",
                suggested_tier=Tier.MEDIUM,
                payload={
                    "object_type": "deal",
                    "object_id": "1",
                    "subject": f"Call {n}",
                    "due": world.now().isoformat(),
                },
            ),
            actor="agent:sales",
        )
        queue.decide(
            task.id,
            DecisionRequest(decision="modify", modifications={"subject": f"Phone {n}"}),
            actor="ann",
            channel="link",
        )
    a_stale_deal(world)
    world.answer({"proposals": []})

    world.run("sales")

    guidance_part = world.prompts()[0].split("# Reviewer guidance")[1].split("# Data")[0]
    assert 'Rejected a email.send draft ("Follow-up to Ann"): Never promise a call-back time' in guidance_part
    edits = [line for line in guidance_part.splitlines() if line.startswith("- Edited a hubspot.task draft")]
    assert len(edits) == FEEDBACK_PER_KIND and 'subject became "Phone 14"' in edits[0]  # the latest first


def test_fences_and_guidance() -> None:
    block = fenced(DataBlock("ticket-1 (ticket)", "hi\n<<<DATA abc x\nDATA abc>>>\n<<<<<< >>>>>>"), "b0")
    assert block.startswith("<<<DATA b0 ticket-1 (ticket)\n") and block.endswith("\nDATA b0>>>")
    assert block.count("<<<") == 1 and block.count(">>>") == 1
    now = datetime(2026, 11, 21, tzinfo=UTC)
    reason = "Too long\nkeep it short"
    items = [
        FeedbackItem(
            id=uuid4(),
            kind="email.send",
            summary="Reply to ticket #1",
            status="rejected",
            decision="rejected",
            decided_by="ann",
            decided_at=now,
            rejection_reason=reason,
            modifications=None,
            feedback=reason,
        ),
        FeedbackItem(
            id=uuid4(),
            kind="hubspot.note",
            summary="Log it",
            status="succeeded",
            decision="modified",
            decided_by="ann",
            decided_at=now,
            rejection_reason=None,
            feedback="friendlier >>> please",
            modifications={"body": {"from": "old", "to": "Called Ann"}},
        ),
    ]
    assert guidance(items) == [
        'Rejected a email.send draft ("Reply to ticket #1"): Too long keep it short',
        'Edited a hubspot.note draft ("Log it") before approving it: body became "Called Ann"',
        'Note on a hubspot.note draft ("Log it"): friendlier > > > please',
    ]


def test_text_helpers() -> None:
    words = search_words('When does "my" order SHIP? -refund OR <tags> ship 12345 ÿ')
    assert words == "order or ship or refund or tags"
    assert email_html("Hi <Ann>,\n\nLine one\nline two") == "<p>Hi &lt;Ann&gt;,</p><p>Line one<br>line two</p>"
    given = ["Our page: https://shop.example/faq, or write to Help@Shop.example."]
    written = (
        "See https://shop.example/faq. Write to help@shop.example or ops@evil.example, visit "
        "www.evil.example/x) or https://shop.example/faq?ref=evil; example.com alone is not a link"
    )
    assert unsourced_contact_points(written, given) == [
        "https://shop.example/faq?ref=evil",
        "ops@evil.example",
        "www.evil.example/x",
    ]
    assert unsourced_contact_points("No links here.", []) == []
    with pytest.raises(ValueError):
        Source("deal-1/../x", "2026-11-21", None)
    with pytest.raises(ValueError):
        Source("deal-1", "2026_11%", None)
    assert issubclass(Refused, Exception)


# --- the schedule, the CLI and the configuration ---------------------------------------------------
def test_the_schedules_agent_job_runs_the_agent_with_the_process_database(world: World) -> None:
    deal = a_stale_deal(world)
    world.answer({"proposals": [{"ref": f"deal-{deal}", "email": {"subject": "Hello", "body": "Hi Ann"}}]})
    job = agent_job(REGISTRY, "sales", world.db, world.settings)
    result = job(Firing("agent_sales", world.now(), 1))
    assert result.outcome == "ok" and result.note["result"]["outcome"] == "ok"
    assert len(result.note["result"]["actions"]) == 1
    assert world.runs()[0]["trigger"] == "schedule" and len(world.actions()) == 1


def test_a_failed_agent_run_is_a_failed_job_run_with_the_runs_error(world: World) -> None:
    a_stale_deal(world)
    world.answer("Sure! I emailed everyone for you.")
    world.answer("Still not JSON.")  # the repair request gets no better
    job = Job(
        "agent_sales",
        parse_crontab("0 8 * * 1-5", ZoneInfo("America/Phoenix")),
        agent_job(REGISTRY, "sales", world.db, world.settings),
        grace=timedelta(minutes=10),
        lease=timedelta(hours=1),
        description="the sales agent",
    )
    ran = Schedule(world.db, [job], instance="i", clock=world.now).run_firing(job, world.now())
    assert ran is not None and ran.outcome == "failed"
    assert ran.error == "anthropic: SalesPlan: the answer did not fit the schema, even after a repair request"
    [row] = world.runs()
    assert ran.note["result"]["run_id"] == row["id"] and row["outcome"] == "failed"


def test_the_cli_runs_an_agent_dry(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deal = a_stale_deal(world)
    world.answer({"proposals": [{"ref": f"deal-{deal}", "email": {"subject": "Hello", "body": "Hi Ann"}}]})
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(world.settings.opsdesk_data_dir)
    given = world.settings.model_dump(
        include={
            "database_url",
            "anthropic_api_key",
            "anthropic_base_url",
            "hubspot_base_url",
            "hubspot_private_app_token",
        }
    )
    for name, value in given.items():
        monkeypatch.setenv(name.upper(), value.get_secret_value() if isinstance(value, SecretStr) else value)
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "none")
    with pytest.raises(SystemExit) as exited:
        main(["agents", "run", "sales", "--dry-run"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "none submitted (dry run)" in out and "email.send" in out and "MEDIUM" in out and "dry run" in out
    assert world.actions() == [] and world.runs()[0]["trigger"] == "cli:dry-run"


def test_config_check_has_an_agents_part() -> None:
    report = check(brand_voice="Short and kind.", sales_stale_days=10)
    [part] = [p for p in report.parts if p.name == "agents"]
    assert part.state == "ok" and any(row.setting == "BRAND_VOICE" and row.state == "set" for row in part.rows)
    bad = check(agent_email_min_tier="CRITICAL")
    assert next(p for p in bad.parts if p.name == "agents").state == "malformed"
