"""The demo's built-in sample data: a few knowledge-base articles, and sample plans of the kind the
agents draft, with the facts that put them in every tier of the risk policy.

Each plan is submitted as a `note.record` action: approving one only records a note in opsdesk's
own database, so nothing of the demo reaches a customer, a CRM or a mailbox whatever is configured.
The text says what the real draft would be (an email, a task, a stage change); the tier comes from
the facts, through the real queue and policy, as an agent's would."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from app.core.models import Impact

DEMO_SOURCE = "opsdesk-demo"  # memory's source for the demo articles (demo_remove deletes it)
DEMO_AGENT = "demo"  # never a real agent's name: the agents' feedback never reads a demo decision
MARK = "DEMO"  # what every demo summary starts with, so every page shows it


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    body: str


@dataclass(frozen=True)
class SamplePlan:
    slot: str  # the dedupe key's last part: running the demo again opens nothing twice
    drafted_as: str  # the action kind a real agent would draft
    summary: str
    reasoning: str
    draft: str
    impact: Impact


ARTICLES: tuple[Article, ...] = (
    Article(
        "refunds",
        "Refund policy",
        "We refund any order within 30 days of delivery, no questions asked. Refunds go back to the card "
        "used for the order and take 5 to 10 business days to appear. A double charge is refunded at once.",
    ),
    Article(
        "password-reset",
        "Resetting your password",
        "Open the sign-in page and choose 'Forgot password'. We email a reset link that works for one hour. "
        "If the email does not arrive, check the spam folder, then ask support to resend it.",
    ),
    Article(
        "shipping",
        "Shipping times",
        "Orders placed before 2 pm ship the same business day. Standard delivery takes 3 to 5 business days; "
        "express takes 1 to 2. Tracking numbers are emailed when the parcel leaves the warehouse.",
    ),
    Article(
        "annual-plan",
        "Annual plans and discounts",
        "An annual plan costs ten months' price for twelve months of service. Switching from monthly to "
        "annual is pro-rated; the unused part of the current month is credited to the first annual invoice.",
    ),
    Article(
        "business-hours",
        "Support hours",
        "Support answers Monday to Friday, 8 am to 6 pm Arizona time. Messages sent outside those hours are "
        "answered the next business morning, oldest first.",
    ),
)

_NOTE = "Demo data from `opsdesk demo`: approving it only records a note; `opsdesk demo --remove` removes it."

PLANS: tuple[SamplePlan, ...] = (
    SamplePlan(
        "crm-note",
        "hubspot.note",
        "Log the renewal call with Mesa Dental on their HubSpot deal",
        "Rosa confirmed on the call that the renewal contract reached the right person.",
        "Call with Rosa (Mesa Dental): contract received, legal reviews it this week.",
        Impact(),
    ),
    SamplePlan(
        "ticket-reply",
        "email.send",
        "Answer ticket #1042: how to reset a password",
        "The question is answered word for word by the knowledge-base article 'Resetting your password'.",
        "Subject: Resetting your password\n\nHi Sam,\n\nOpen the sign-in page and choose 'Forgot password': the "
        "link we email works for one hour. If it does not arrive, check the spam folder and reply here.\n\nThe team",
        Impact(recipients=1),
    ),
    SamplePlan(
        "newsletter",
        "email.campaign",
        "Newsletter 'Five things to check before spring' to 120 subscribers",
        "Three tickets this month asked about shipping times; the newsletter answers them before more arrive.",
        "Subject: Five things to check before spring\n\n1. Orders before 2 pm ship the same day...",
        Impact(recipients=120),
    ),
    SamplePlan(
        "blog-draft",
        "notion.blog_draft",
        "Blog post draft: 'What an annual plan really costs'",
        "Annual plans came up in four sales calls; a public post answers it once.",
        "An annual plan costs ten months' price for twelve months of service...",
        Impact(public=True),
    ),
    SamplePlan(
        "deal-stage",
        "hubspot.deal_stage",
        "Move the Harbor Cafe deal back from 'contract sent' to 'qualified'",
        "The owner said they will not decide before the summer; the contract stage overstates the pipeline.",
        "Deal Harbor Cafe: contractsent -> qualifiedtobuy",
        Impact(reversible=False),
    ),
    SamplePlan(
        "announcement",
        "email.campaign",
        "Announcement of the new support hours to all 420 customers",
        "Support hours change next month; every customer should hear it before then.",
        "Subject: New support hours\n\nFrom next month support answers 8 am to 6 pm Arizona time...",
        Impact(recipients=420),
    ),
    SamplePlan(
        "refund",
        "hubspot.task",
        "Refund $150 to Dana Ortiz for a double charge",
        "Ticket #1057 shows two charges for one order; the refund policy refunds a double charge at once.",
        "Task for the billing owner: refund $150.00 to Dana Ortiz (order 88213, charged twice).",
        Impact(cost_usd=Decimal("150.00"), recipients=1),
    ),
    SamplePlan(
        "credit",
        "hubspot.task",
        "Credit $240 to Harbor Cafe for switching to the annual plan",
        "The switch is pro-rated: the unused part of this month is credited, as the annual-plan article says.",
        "Task for the billing owner: credit $240.00 to Harbor Cafe's first annual invoice.",
        Impact(cost_usd=Decimal("240.00")),
    ),
)


def summary_of(plan: SamplePlan) -> str:
    return f"{MARK} — {plan.summary}"


def reasoning_of(plan: SamplePlan) -> str:
    return f"{_NOTE}\n\n{plan.reasoning}"
