"""The sales agent end to end: HubSpot's stale deals and new contacts -> the model's plan -> actions
on real PostgreSQL -> Discord -> a decision through the signed link -> the executor -> Brevo and
HubSpot; and the next run learns from the rejection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args
from uuid import UUID

import psycopg
import pytest

from agents.sales import DealStage
from app.core.database import Database
from app.kinds.hubspot import DEFAULT_DEAL_STAGES
from tests.agent_world import World, agent_world
from tests.conftest import advance_clock

REJECTION = "Too pushy: never mention a discount we have not agreed on"


@pytest.fixture
def world(db: Database, database_url: str, sql: psycopg.Connection, tmp_path: Path) -> Iterator[World]:
    with agent_world(db, database_url, sql, tmp_path) as made:
        yield made


def follow_up(ref: str, first_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "email": {
            "subject": "Checking in on your renewal",
            "body": f"Hi {first_name},\n\nAre you still planning the renewal?\n\nThe team",
        },
        "rationale": "Quiet for a month; a short nudge.",
        "confidence": 0.8,
        **extra,
    }


def test_two_stale_deals_become_two_follow_ups_decided_through_discord(world: World) -> None:
    ann = world.contact("ann@acme.example", "Ann", "Lee")
    bob = world.contact("bob@birch.example", "Bob", "Birch")
    acme, birch = world.stale_deal("Acme renewal", ann), world.stale_deal("Birch order", bob)
    world.stale_deal("Recent deal", None, quiet_days=2)  # active: not stale
    world.answer(
        {
            "proposals": [
                follow_up(f"deal-{acme}", "Ann"),
                # an address in the model's answer goes nowhere: the plan has no field for it
                follow_up(f"deal-{birch}", "Bob", to="mallory@evil.example", bcc=["mallory@evil.example"]),
            ]
        }
    )

    report = world.run("sales")

    assert report.outcome == "ok" and report.sources == 2 and report.refused == []
    assert sorted((a.kind, a.tier.value, a.status.value if a.status else None) for a in report.actions) == [
        ("email.send", "MEDIUM", "pending"),
        ("email.send", "MEDIUM", "pending"),
    ]  # no CRM note before a send
    emails = world.actions("email.send")
    assert {a["requested_action"]["to"]["email"] for a in emails} == {"ann@acme.example", "bob@birch.example"}
    assert {a["requested_action"]["crm_note"]["object_id"] for a in emails} == {acme, birch}
    assert all(a["estimated_impact"]["recipients"] == 1 and "bcc" not in a["requested_action"] for a in emails)
    prompt = world.prompts()[0]
    assert f"deal-{acme} (HubSpot deal)" in prompt and "Recent deal" not in prompt
    assert "@" not in prompt  # the model is never shown an address it could echo

    posts = world.announce()
    assert len(posts) == 2  # the two emails wait for a person
    links = world.links()
    by_recipient = {a["requested_action"]["to"]["email"]: UUID(a["id"]) for a in emails}
    approve, reject = links[by_recipient["ann@acme.example"]], links[by_recipient["bob@birch.example"]]
    world.decide(approve["approve"], "approve")
    world.decide(reject["reject"], "reject", reason=REJECTION)

    world.execute()
    world.execute()  # a second pass sends nothing again
    assert world.brevo.delivered == ["ann@acme.example"] and world.brevo.repeats == 0
    # the CRM logs the email that was sent, once, and nothing for the rejected one
    [(deal, note_id)] = [
        (to_id, body_id)
        for kind, body_id, to_type, to_id, _ in world.hubspot.associations
        if kind == "notes" and to_type == "deals"
    ]
    note = world.hubspot.objects["notes"][note_id]["properties"]["hs_note_body"]
    assert deal == acme and "opsdesk sent this email to Ann Lee" in note and "Checking in on your renewal" in note
    [logged] = world.actions("hubspot.note")
    assert (logged["agent"], logged["risk_level"], logged["status"]) == ("sales", "LOW", "succeeded")
    assert logged["metadata"]["email_action"] == str(by_recipient["ann@acme.example"])

    runs = world.runs()
    assert runs[0]["outcome"] == "ok" and runs[0]["proposals"] == 2 and runs[0]["tokens"] == 1350

    # the next run: both deals are handled today; a new one is drafted with the reviewer's reason
    carol = world.contact("carol@cedar.example", "Carol")
    cedar = world.stale_deal("Cedar upgrade", carol)
    world.answer({"proposals": [follow_up(f"deal-{cedar}", "Carol")]})
    again = world.run("sales")
    assert again.already_handled == 2 and again.sources == 1
    prompt = world.prompts()[-1]
    assert REJECTION in prompt and f"deal-{cedar}" in prompt and f"deal-{acme}" not in prompt
    # the stable instructions are the same bytes on every run, marked for the prompt cache
    first, last = world.claude.messages[0], world.claude.messages[-1]
    assert first["system"] == last["system"] and last["system"][0]["cache_control"]["type"] == "ephemeral"
    assert world.prompts()[0].splitlines()[0] != prompt.splitlines()[0]  # a fresh fence token per run


def test_a_repeated_run_never_opens_a_second_action_for_the_same_deal(world: World) -> None:
    ann = world.contact("ann@acme.example", "Ann")
    acme = world.stale_deal("Acme renewal", ann)
    world.answer({"proposals": [follow_up(f"deal-{acme}", "Ann")]})
    dry = world.run("sales", dry_run=True)
    assert dry.outcome == "ok" and len(dry.actions) == 1 and all(a.status is None for a in dry.actions)
    assert world.actions() == []  # built and tiered, nothing submitted

    world.answer({"proposals": [follow_up(f"deal-{acme}", "Ann")]})
    assert len(world.run("sales").actions) == 1
    asked = len(world.claude.messages)
    assert world.run("sales").already_handled == 1 and len(world.claude.messages) == asked  # no model call
    advance_clock(world.sql, 86400)  # tomorrow: the email still waits, so the deal is left alone
    assert world.run("sales").already_handled == 1 and len(world.actions()) == 1


def test_deals_the_model_keeps_skipping_do_not_keep_new_contacts_out_of_the_prompt(world: World) -> None:
    quiet = [world.stale_deal(f"Quiet deal {n}", world.contact(f"q{n}@quiet.example", f"Q{n}")) for n in range(2)]
    world.answer({"proposals": []})
    assert world.run("sales", agent_max_sources=2, dry_run=True).sources == 2
    assert world.sql.execute("select count(*) from agent_skips").fetchone() == (0,)  # a dry run records none
    world.answer({"proposals": []})  # the model passes over both
    first = world.run("sales", agent_max_sources=2)
    assert first.sources == 2 and first.actions == []
    skipped = world.sql.execute("select ref, reason from agent_skips order by ref").fetchall()
    assert skipped == sorted((f"deal-{deal}", "the model left it out") for deal in quiet)
    asked = len(world.claude.messages)
    assert world.run("sales", agent_max_sources=2).already_handled == 2  # the same input is not sent again
    assert len(world.claude.messages) == asked

    advance_clock(world.sql, 86400)  # the next day: the deals are a new input, and a contact arrived
    newcomer = world.contact("nina@new.example", "Nina")
    world.answer({"proposals": [follow_up(f"contact-{newcomer}", "Nina")]})
    second = world.run("sales", agent_max_sources=2)
    prompt = world.prompts()[-1]
    assert f"contact-{newcomer} (HubSpot new contact)" in prompt  # never skipped: ahead of the skipped deals
    assert second.sources == 2 and [a.source for a in second.actions] == [f"contact-{newcomer}"]


def test_a_new_contact_the_model_leaves_out_comes_back_the_next_day(world: World) -> None:
    nina = world.contact("nina@new.example", "Nina")  # a new contact has one version: `new`
    world.answer({"proposals": []})
    assert world.run("sales").sources == 1
    asked = len(world.claude.messages)
    assert world.run("sales").already_handled == 1 and len(world.claude.messages) == asked  # not again today
    advance_clock(world.sql, 86400)
    world.answer({"proposals": [follow_up(f"contact-{nina}", "Nina")]})
    assert [a.source for a in world.run("sales").actions] == [f"contact-{nina}"]  # not skipped forever


def test_a_call_a_stage_regression_and_a_new_contact(world: World) -> None:
    ann = world.contact("ann@acme.example", "Ann")
    acme = world.stale_deal("Acme renewal", ann, stage="contractsent", owner="777")
    newcomer = world.contact("dora@dune.example", "Dora")
    no_email = world.stale_deal("Phone-only deal", world.contact(None, "Pete"))
    world.answer(
        {
            "proposals": [
                {
                    "ref": f"deal-{acme}",
                    "call": {"subject": "Call Ann about the contract", "notes": "Ask about legal", "due_in_days": 2},
                    "new_stage": "qualifiedtobuy",
                    "rationale": "stalled",
                },
                follow_up(f"contact-{newcomer}", "Dora"),
                follow_up(f"deal-{no_email}", "Pete"),  # no address in HubSpot: refused, not guessed
                follow_up("deal-999999", "Nobody"),  # not a source of this run
            ]
        }
    )

    report = world.run("sales")

    kinds = sorted((a.source, a.kind, a.tier.value) for a in report.actions)
    assert kinds == sorted(
        [
            (f"deal-{acme}", "hubspot.task", "LOW"),
            (f"deal-{acme}", "hubspot.deal_stage", "HIGH"),  # backwards: irreversible by the kind's own hook
            (f"contact-{newcomer}", "email.send", "MEDIUM"),
        ]
    )
    assert {r.ref: r.reason for r in report.refused} == {
        f"deal-{no_email}": "HubSpot has no email address for its contact; a call is the way",
        "deal-999999": "not one of this run's sources",
    }
    [task] = world.actions("hubspot.task")
    assert task["requested_action"]["owner_id"] == "777" and task["requested_action"]["object_id"] == acme
    [stage] = world.actions("hubspot.deal_stage")
    assert stage["requested_action"] == {"deal_id": acme, "from_stage": "contractsent", "to_stage": "qualifiedtobuy"}
    assert stage["estimated_impact"]["reversible"] is False and stage["status"] == "pending"


def test_the_schema_knows_the_stages_the_kind_can_order() -> None:
    assert get_args(DealStage) == DEFAULT_DEAL_STAGES
