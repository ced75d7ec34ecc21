"""The support agent end to end: open HubSpot tickets -> memory -> the model's plan -> replies citing
knowledge-base articles, refunds as money the policy tiers, flags for a person -> Discord -> a
decision through the signed link -> the executor -> Brevo and HubSpot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from app.core.database import Database
from app.memory.models import MemoryItem
from tests.agent_world import World, agent_world

REJECTION = "Never promise a delivery date; point to the shipping article instead"


@pytest.fixture
def world(db: Database, database_url: str, sql: psycopg.Connection, tmp_path: Path) -> Iterator[World]:
    with agent_world(db, database_url, sql, tmp_path) as made:
        yield made


def knowledge_base(world: World) -> dict[str, int]:
    return world.remember(
        MemoryItem(
            kind="kb_article",
            source="file",
            source_id="shipping.md",
            title="Shipping times",
            content="Orders ship within 3 business days. Delivery takes 5 to 7 days; tracking comes by email.",
            metadata={"url": "https://help.example.com/shipping"},
        ),
        MemoryItem(
            kind="kb_article",
            source="file",
            source_id="refunds.md",
            title="Refunds",
            content="A broken lamp is refunded in full within 30 days of delivery.",
        ),
    )


def reply(ref: str, body: str, cited: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "reply": {"subject": "", "body": body, "cited": cited},
        "rationale": "From the KB.",
        "confidence": 0.9,
        **extra,
    }


def test_replies_cite_memory_refunds_are_money_and_the_next_run_learns(world: World) -> None:
    kb = knowledge_base(world)
    carol = world.contact("carol@example.com", "Carol")
    dan = world.contact("dan@example.com", "Dan")
    shipping = world.ticket("Where is my order?", "I ordered a lamp last week. When does it ship?", carol)
    broken = world.ticket("Broken lamp", "My lamp arrived broken. I want my $150 back and when will it arrive?", dan)
    world.ticket("No requester", "Who am I?", None)  # no one to answer: left for a person
    world.answer(
        {
            "proposals": [
                reply(
                    f"ticket-{shipping}",
                    "Hi Carol,\n\nOrders ship within 3 business days.\n\nThe team",
                    [f"mem-{kb['shipping.md']}"],
                ),
                {
                    **reply(
                        f"ticket-{broken}",
                        "Hi Dan,\n\nSorry about the lamp. It arrives Friday.\n\nThe team",
                        [f"mem-{kb['refunds.md']}"],
                    ),
                    "refund": {
                        "type": "refund",
                        "amount_usd": "150.00",
                        "reason": "Broken on arrival; refunds article",
                    },
                    "needs_human": "Confirm the lamp is really broken (photo)",
                },
            ]
        }
    )

    report = world.run("support")

    assert report.outcome == "ok" and report.sources == 2 and report.refused == []
    tiers = sorted((a.source, a.kind, a.tier.value, a.summary.split(":")[0]) for a in report.actions)
    assert tiers == sorted(
        [
            (f"ticket-{shipping}", "email.send", "MEDIUM", f"Reply to ticket #{shipping}"),
            (f"ticket-{broken}", "email.send", "MEDIUM", f"Reply to ticket #{broken}"),
            (f"ticket-{broken}", "hubspot.task", "CRITICAL", f"Refund $150.00 for ticket #{broken}"),
            (f"ticket-{broken}", "hubspot.task", "LOW", f"Ticket #{broken} needs a human"),
        ]
    )
    prompt = world.prompts()[0]
    assert f"mem-{kb['shipping.md']} (knowledge-base article)" in prompt and "Orders ship within" in prompt
    emails = {a["requested_action"]["to"]["email"]: a for a in world.actions("email.send")}
    assert set(emails) == {"carol@example.com", "dan@example.com"}
    to_carol = emails["carol@example.com"]
    assert to_carol["metadata"]["citations"][0]["source_id"] == "shipping.md"
    assert "Shipping times (https://help.example.com/shipping)" in to_carol["requested_action"]["text"]
    assert "Cites: Shipping times" in to_carol["reasoning"]
    assert to_carol["requested_action"]["subject"] == "Re: Where is my order?"
    [refund] = [a for a in world.actions("hubspot.task") if a["risk_level"] == "CRITICAL"]
    assert refund["estimated_impact"]["cost_usd"] == "150.00" and refund["status"] == "pending"
    assert world.sql.execute("select count(*) from memory where kind = 'ticket'").fetchone() == (2,)

    world.announce()
    links = world.links()
    assert len(links) == 3  # two replies and the refund wait; the flag ran at once
    world.decide(links[UUID(to_carol["id"])]["approve"], "approve")
    world.decide(links[UUID(emails["dan@example.com"]["id"])]["reject"], "reject", reason=REJECTION)
    world.execute()
    world.execute()
    assert world.brevo.delivered == ["carol@example.com"] and world.brevo.repeats == 0
    [flag] = world.hubspot.objects["tasks"].values()
    assert flag["properties"]["hs_task_subject"].startswith(f"Needs a human: ticket #{broken}")

    again_ticket = world.ticket("Tracking", "Where is my tracking number?", carol)
    world.answer(
        {
            "proposals": [
                reply(
                    f"ticket-{again_ticket}",
                    "Hi Carol,\n\nIt comes by email.\n\nThe team",
                    [f"mem-{kb['shipping.md']}"],
                )
            ]
        }
    )
    again = world.run("support")
    assert again.already_handled == 2 and again.sources == 1 and REJECTION in world.prompts()[-1]


def test_a_citation_memory_did_not_return_is_flagged_for_a_person_instead(world: World) -> None:
    knowledge_base(world)
    carol = world.contact("carol@example.com", "Carol")
    shipping = world.ticket("Where is my order?", "When does my order ship?", carol)
    left_out = world.ticket("Another", "Something else entirely", carol)
    world.answer({"proposals": [reply(f"ticket-{shipping}", "It ships today.", ["mem-424242"])]})

    report = world.run("support")

    assert [(r.ref, r.reason) for r in report.refused] == [
        (f"ticket-{shipping}", "it cites mem-424242, which memory did not return for this ticket")
    ]
    assert world.actions("email.send") == []
    flags = {a["requested_action"]["subject"]: a for a in world.actions("hubspot.task")}
    assert len(flags) == 2 and all(a["status"] == "approved" for a in flags.values())
    assert any(
        "did not send the drafted answer: it cites mem-424242" in a["requested_action"]["body"] for a in flags.values()
    )
    assert any(
        a["requested_action"]["body"] == "opsdesk drafted no answer for this ticket."
        and a["dedupe_key"].startswith(f"support/ticket-{left_out}/")
        for a in flags.values()
    )
    assert world.run("support").already_handled == 2  # flagged: not drafted again for the same message


def row_counts(world: World) -> dict[str, int]:
    tables = [
        name
        for (name,) in world.sql.execute(
            "select tablename from pg_tables where schemaname = 'public' order by tablename"
        ).fetchall()
    ]
    return {table: world.sql.execute(f'select count(*) from "{table}"').fetchone()[0] for table in tables}


def test_a_dry_run_writes_nothing_but_its_run_record(world: World) -> None:
    kb = knowledge_base(world)
    carol = world.contact("carol@example.com", "Carol")
    shipping = world.ticket("Where is my order?", "I ordered a lamp last week. When does it ship?", carol)
    world.ticket("Left out", "Something the model passes over", carol)
    world.answer(
        {
            "proposals": [
                reply(
                    f"ticket-{shipping}",
                    "Hi Carol,\n\nOrders ship within 3 business days.",
                    [f"mem-{kb['shipping.md']}"],
                )
            ]
        }
    )
    before = row_counts(world)

    report = world.run("support", dry_run=True)

    assert report.outcome == "ok" and report.dry_run and len(report.actions) == 2  # the reply, a flag for the other
    after = row_counts(world)
    changed = {table: after[table] - before[table] for table in after if after[table] != before[table]}
    # the run's record, and the bookkeeping of the outside calls it made (the model's spend, HubSpot's
    # shared rate limit): no ticket remembered, no action, no skip
    assert set(changed) <= {"agent_runs", "llm_calls", "llm_model_resolution", "rate_windows"}
    assert changed["agent_runs"] == 1 and changed["llm_calls"] == 1


def test_an_address_or_link_the_data_did_not_give_raises_the_reply(world: World) -> None:
    kb = knowledge_base(world)
    people = {name: world.contact(f"{name}@example.com", name.title()) for name in ("ann", "bob", "cy")}
    tickets = {
        name: world.ticket(
            "Where is my order?", "When does it ship? My tracking page is https://track.example.org/abc", contact
        )
        for name, contact in people.items()
    }
    shipping = [f"mem-{kb['shipping.md']}"]
    world.answer(
        {
            "proposals": [
                reply(f"ticket-{tickets['ann']}", "Orders ship within 3 business days.", shipping),
                reply(f"ticket-{tickets['bob']}", "Your page https://track.example.org/abc. shows it.", shipping),
                reply(
                    f"ticket-{tickets['cy']}",
                    "Pay the customs fee at https://pay.evil.example/now or write to Billing@Evil.example.",
                    shipping,
                ),
            ]
        }
    )

    world.run("support", agent_email_min_tier="LOW")  # where the check matters: a reply could go out at once

    replies = {a["requested_action"]["to"]["email"]: a for a in world.actions("email.send")}
    assert {email: a["risk_level"] for email, a in replies.items()} == {
        "ann@example.com": "LOW",
        # the ticket gave that link, but a ticket is the customer's text (issue 12): a ticket filed
        # in someone else's name must not get its link into our reply unreviewed
        "bob@example.com": "MEDIUM",
        "cy@example.com": "MEDIUM",
    }
    assert {
        "dimension": "content",
        "tier": "MEDIUM",
        "detail": "the draft has an address or link the data did not give: https://track.example.org/abc",
    } in (replies["bob@example.com"]["risk_reasons"])
    flagged = replies["cy@example.com"]
    assert (
        flagged["status"] == "pending"
        and {
            "dimension": "content",
            "tier": "MEDIUM",
            "detail": "the draft has an address or link the data did not give: billing@evil.example, "
            "https://pay.evil.example/now",
        }
        in flagged["risk_reasons"]
    )
    # the article links opsdesk adds itself come from memory, not from the model: never flagged
    assert "(https://help.example.com/shipping)" in replies["ann@example.com"]["requested_action"]["text"]
