"""Issue 12, finding 3: untrusted text is inert in Discord. Hostile text goes in where each kind of
outsider can put it (a submitter's summary, reasoning, draft and flag, a link holder's name and
rejection reason typed into the real review form, a failed run's error, a cancellation reason),
and every payload the fake Discord receives (announce, reminder, escalation, every outcome edit,
the daily report) is walked: no live URL, masked link, autolink or invite anywhere in its text, no
markdown from the hostile text, no ping; only opsdesk's own buttons link, to opsdesk."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest

from app.approvals.links import Purpose
from app.core.database import Database
from app.core.models import ActionRequest, Impact, Reason, Tier
from app.notifications.sender import NotificationSender
from app.reports.build import DailyReports
from app.reports.delivery import ReportSender
from integrations.discord import DiscordClient, DiscordConfig
from integrations.resilience import CircuitBreaker
from tests.conftest import advance_clock
from tests.fake_discord import FakeDiscord, Request
from tests.link_support import Site, running_site, token_of

ROLE = "112233445566778899"
HOSTILE = (
    "[Approve now](https://evil.example/a) **EVIL1** ||EVIL2|| __EVIL3__ ~~EVIL4~~ `EVIL5` *EVIL6*\n"
    "# EVIL7\n> EVIL8\n-# EVIL9\n1. EVIL10\n<t:0:R> <https://evil.example/b> www.evil.example/c "
    "discord.gg/evil HTTP://EVIL.EXAMPLE/d @everyone <@&123> <#456> </cmd:789> :EVIL11:"
)
NAME = "[Approve now](https://evil.example/r) **EVIL12**"  # one line: what a reviewer name may be

# after escapes are taken out: Discord markdown that would act on the hostile text
MARKUP_ON_EVIL = [
    r"(\*\*|\|\||__|~~|`|\*)EVIL",
    r"(?m)^\s*(#{1,3}|>|-#|\d+\.)\s+EVIL",
    r"<t:0:",
    r"<https",
    r"<[@#/]\d",
    r"</cmd",
    r":EVIL11:",
]


def texts(payload: dict[str, Any]) -> list[str]:
    found = [payload.get("content", "")]
    for embed in payload.get("embeds", []):
        found += [
            embed.get("title", ""),
            embed.get("description", ""),
            (embed.get("footer") or {}).get("text", ""),
            (embed.get("author") or {}).get("name", ""),
        ]
        found += [text for field in embed.get("fields", []) for text in (field["name"], field["value"])]
    return found


def labels(payload: dict[str, Any]) -> list[str]:
    """Button labels: plain text (Discord renders no markdown there), so only a URL could mislead."""
    return [button.get("label", "") for row in payload.get("components", []) for button in row["components"]]


def live_problems(payload: dict[str, Any], base_url: str) -> list[str]:
    problems = []
    for text in texts(payload):
        literal = re.sub(r"\\.", "\x01", text, flags=re.S)  # what Discord shows as typed
        shown = re.sub(r"\\(.)", r"\1", text, flags=re.S)  # the characters a reader sees
        if re.search(r"\[[^\]\n]*\]\(", literal):
            problems.append(f"masked link in {text!r}")
        if re.search(r"(?i)[a-z][a-z0-9+.-]*://|\bwww\.|discord(app)?\.(gg|com/invite)", shown):
            problems.append(f"a URL Discord links in {text!r}")
        problems += [f"{pattern} acts in {text!r}" for pattern in MARKUP_ON_EVIL if re.search(pattern, literal)]
        if re.search(r"@(everyone|here)", literal):
            problems.append(f"a mass ping in {text!r}")
    problems += [
        f"a URL in the label {label!r}"
        for label in labels(payload)
        if re.search(r"(?i)[a-z][a-z0-9+.-]*://|\bwww\.", label)
    ]
    for embed in payload.get("embeds", []):
        if "url" in embed or not str((embed.get("image") or {}).get("url", "attachment://")).startswith(
            "attachment://"
        ):
            problems.append(f"an embed links somewhere: {embed}")
    for row in payload.get("components", []):
        problems += [
            f"a button to {button['url']}"
            for button in row["components"]
            if not button["url"].startswith(f"{base_url}/approvals")
        ]
    if payload.get("allowed_mentions", {}).get("parse") != []:
        problems.append("mentions are parsed")
    return problems


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def site(db: Database, database_url: str, discord: FakeDiscord) -> Iterator[Site]:
    with running_site(
        db,
        database_url,
        discord_webhook_url=discord.webhook_url,
        discord_escalation_role_id=ROLE,
        approval_reminder_hours=1,
        escalate_before_expiry_hours=2,
    ) as running:
        yield running


def hostile_action(site: Site, *, cost: str = "0", recipients: int = 120) -> UUID:
    request = ActionRequest(
        agent="sales",
        kind="note.record",
        summary=HOSTILE.replace("\n", " "),
        reasoning=HOSTILE,
        payload={"body": HOSTILE, "metadata": {HOSTILE[:40]: HOSTILE}},
        impact=Impact(recipients=recipients, cost_usd=Decimal(cost)),
        flags=[Reason(dimension="content", tier=Tier.MEDIUM, detail=f"the draft has a link: {HOSTILE}")],
    )
    return site.queue.submit(request, actor="api", request_id="hostile").id


def post_form(site: Site, action_id: UUID, purpose: Purpose, **fields: str) -> None:
    token = token_of(site.link(site.action(action_id), purpose))
    response = site.http.post(f"/approvals/{action_id}/decision", data={"t": token, **fields})
    assert response.status_code == 303, response.text


def test_every_discord_message_keeps_untrusted_text_inert(
    site: Site, db: Database, sql: psycopg.Connection, discord: FakeDiscord
) -> None:
    sender = NotificationSender(db, site.settings, worker_id="t", rng=lambda: 1.0)
    approved, rejected = hostile_action(site), hostile_action(site, cost="500")  # MEDIUM; CRITICAL
    expired, cancelled = hostile_action(site), hostile_action(site)
    sender.run_until_idle()  # the announces
    advance_clock(sql, 2 * 3600)
    sender.enqueue_reminders()
    advance_clock(sql, 69 * 3600)  # CRITICAL: within ESCALATE_BEFORE_EXPIRY_HOURS of its 72 h
    sender.enqueue_reminders()
    sender.run_until_idle()  # reminders and the escalation
    post_form(site, approved, "approve", decision="approve", reviewer=NAME, reason=HOSTILE)
    post_form(site, rejected, "reject", decision="reject", reviewer=NAME, reason=HOSTILE)
    site.queue.cancel(cancelled, actor="cli:ann", reason=HOSTILE)
    sql.execute("update actions set expires_at = now() - interval '1 second' where id = %s", (expired,))
    site.queue.expire_due()
    run = db.call("start_agent_run", agent="sales", trigger="test")
    db.call(
        "close_agent_run",
        run_id=run["id"],
        outcome="failed",
        proposals=0,
        call_ids=[],
        error=HOSTILE,
        skips=[],
        refused=[],
    )
    hostile_action(site)  # still waiting when the report is built
    sender.run_until_idle()  # the outcome edits, and that one's announce
    sender.close()
    leads = {post.body["content"].split("**")[1].split(":")[0] for post in discord.posts()}
    assert leads == {"Approval needed", "Reminder", "Escalation"}
    # every message of the four that left pending is edited: 2 each, 3 for the escalated one
    assert len(discord.edits()) == 9

    zone = site.settings.time_zone
    today = site.queue.clock().astimezone(zone)
    advance_clock(sql, (datetime.combine(today.date() + timedelta(days=1), time(0, 5), zone) - today).total_seconds())
    url = site.settings.discord_webhook_url
    assert url is not None
    reports = DailyReports(db, site.settings)
    reports.build_and_store(today.date())
    ReportSender(
        reports,
        worker_id="t",
        client_factory=lambda: DiscordClient(
            DiscordConfig(webhook_url=url), sleep=lambda _: None, breaker=CircuitBreaker("discord", clock=lambda: 0.0)
        ),
    ).send(today.date())

    sent: list[Request] = discord.posts() + discord.edits()
    assert len(discord.posts()) == 4 + 1 + 4 + 1 + 1  # announces, reminders, the escalation, the report
    problems = {
        f"{request.method} {request.path} #{n}": live_problems(request.body, site.url) for n, request in enumerate(sent)
    }
    assert {where: found for where, found in problems.items() if found} == {}
    # the hostile text is still there for a person to read, only inert
    assert all(any("EVIL1" in text for text in texts(request.body)) for request in sent)
