"""Issue 12, finding 1: text PostgreSQL cannot hold (U+0000, half a surrogate pair) and values that
are not what their field says, arriving from outside through the agents' real inputs (the fake
HubSpot and the fake Claude, real PostgreSQL). One bad record is cleaned and kept, or left out
alone: it never fails the run for the others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.core.database import Database
from app.memory.models import MemoryItem
from app.memory.store import MemoryStore
from tests.agent_world import World, agent_world

NUL = "\x00"
HALF = "\ud800"  # a lone surrogate: what a JSON "\ud800" escape decodes to


@pytest.fixture
def world(db: Database, database_url: str, sql: psycopg.Connection, tmp_path: Path) -> Iterator[World]:
    with agent_world(db, database_url, sql, tmp_path) as made:
        yield made


def reply(ref: str, body: str = "Hi,\n\nThanks for writing.\n\nThe team") -> dict[str, object]:
    return {"ref": ref, "reply": {"subject": "", "body": body, "cited": []}, "rationale": "a reply"}


def test_a_nul_in_a_ticket_subject_stops_no_support_run(world: World) -> None:
    dave = world.contact("dave@example.com", "Dave")
    erin = world.contact("erin@example.com", "Erin")
    bad = world.ticket(f"Order{NUL} late {HALF}", f"Where{NUL} is it?{HALF}", dave)
    good = world.ticket("Order late", "Where is my order?", erin)
    # the model may echo what it read, NUL included (its JSON can carry "\u0000")
    world.answer(
        {"proposals": [reply(f"ticket-{bad}", f"Hi{NUL},\n\nIt ships today.\n\nThe team"), reply(f"ticket-{good}")]}
    )

    report = world.run("support")

    assert report.outcome == "ok", report.error
    replies = {a["requested_action"]["to"]["email"]: a for a in world.actions("email.send")}
    assert set(replies) == {"dave@example.com", "erin@example.com"}
    assert replies["dave@example.com"]["requested_action"]["subject"] == "Re: Order late \ufffd"
    assert replies["dave@example.com"]["requested_action"]["text"] == "Hi,\n\nIt ships today.\n\nThe team"
    remembered = world.sql.execute(
        "select title, content from memory where kind = 'ticket' and source_id = %s", (bad,)
    ).fetchone()
    assert remembered[0] == "Order late \ufffd" and "Where is it?\ufffd" in remembered[1]


def test_a_nul_in_a_contacts_name_stops_no_sales_run(world: World) -> None:
    ann = world.contact("ann@acme.example", f"An{NUL}n", f"Lee{HALF}")
    bob = world.contact("bob@birch.example", "Bob")
    acme, birch = world.stale_deal(f"Acme{NUL} renewal", ann), world.stale_deal("Birch order", bob)
    world.answer(
        {
            "proposals": [
                {
                    "ref": f"deal-{deal}",
                    "email": {"subject": "Checking in", "body": "Hi,\n\nStill planning it?\n\nThe team"},
                    "rationale": "quiet",
                }
                for deal in (acme, birch)
            ]
        }
    )

    report = world.run("sales")

    assert report.outcome == "ok", report.error
    emails = {a["requested_action"]["to"]["email"]: a for a in world.actions("email.send")}
    assert set(emails) == {"ann@acme.example", "bob@birch.example"}
    assert emails["ann@acme.example"]["requested_action"]["to"]["name"] == "Ann Lee\ufffd"
    assert NUL not in world.prompts()[0] and "Acme renewal" in world.prompts()[0]


def test_crm_values_that_are_not_what_their_field_says_stop_no_sales_run(world: World) -> None:
    """A deal amount or date HubSpot holds as free text ("NaN", "soon"): read as unknown, the deal kept."""
    ann = world.contact("ann@acme.example", "Ann")
    bob = world.contact("bob@birch.example", "Bob")
    odd = world.stale_deal("Odd deal", ann)
    world.hubspot.objects["deals"][odd]["properties"].update(amount="NaN", closedate="soon")
    fine = world.stale_deal("Fine deal", bob)
    world.answer(
        {
            "proposals": [
                {
                    "ref": f"deal-{deal}",
                    "email": {"subject": "Checking in", "body": "Hi,\n\nStill planning it?\n\nThe team"},
                    "rationale": "quiet",
                }
                for deal in (odd, fine)
            ]
        }
    )

    report = world.run("sales")

    assert report.outcome == "ok", report.error
    assert {a["requested_action"]["to"]["email"] for a in world.actions("email.send")} == {
        "ann@acme.example",
        "bob@birch.example",
    }
    prompt = world.prompts()[0]
    assert "amount: unknown" in prompt and "expected close: unknown" in prompt


def test_memory_keeps_what_an_import_or_a_page_gives_without_the_nul(world: World) -> None:
    store = MemoryStore(world.db, world.settings)
    counts = store.upsert(
        [
            MemoryItem(
                kind="kb_article",
                source="notion",
                source_id=f"page{NUL}1",
                title=f"Ship{NUL}ping{HALF}",
                content=f"Orders{NUL} ship fast.{HALF}",
                metadata={f"u{NUL}rl": f"https://help.example/{NUL}x", "n": [f"a{HALF}"]},
            )
        ]
    )
    assert counts.created == 1
    row = world.sql.execute("select source_id, title, content, metadata from memory").fetchone()
    assert row == (
        "page1",
        "Shipping\ufffd",
        "Orders ship fast.\ufffd",
        {"url": "https://help.example/x", "n": ["a\ufffd"]},
    )
