"""What each Discord message about an approval says: the announcement with its review buttons,
reminders and escalations, and the outcome it is edited to once the action is decided.

Links travel only in link buttons, never in text, because Discord's unfurler fetches URLs it finds
in message content. Every text opsdesk did not write itself (the summary, reasoning and draft, the
reasons' details, a reviewer's name and reason, a cancellation's reason) goes in through
`integrations.discord.literal`: shown as written, it cannot link, format or ping.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from app.approvals.links import LinkSigner, Purpose
from app.core.errors import InvalidInput
from app.core.models import ActionRecord, Tier
from app.core.settings import Settings
from integrations.discord import Embed, EmbedField, LinkButton, WebhookMessage
from integrations.discord_text import fit, literal

TIER_COLOURS = {Tier.LOW: 0x2ECC71, Tier.MEDIUM: 0xF1C40F, Tier.HIGH: 0xE67E22, Tier.CRITICAL: 0xE74C3C}
TIER_ICONS = {Tier.LOW: "\U0001f7e2", Tier.MEDIUM: "\U0001f7e1", Tier.HIGH: "\U0001f7e0", Tier.CRITICAL: "\U0001f534"}
SETTLED_COLOUR = 0x95A5A6  # grey: the message no longer asks anything of the reader
REASONING_CHARS = 1500  # the review page has the rest; a phone screen does not
DRAFT_LINE_CHARS = 200
VIA_LABELS = {
    "link": "via a review link",
    "inbox": "via the inbox",
    "api": "via the API token",
    "cli": "in the terminal",
}  # the channel, recorded apart from the name (decided_via)
OUTCOME_LABELS = {
    "approved": "\u2705 Approved",
    "modified": "\u270f\ufe0f Edited and approved",
    "rejected": "\u274c Rejected",
    "expired": "\u231b Expired without a decision",
    "cancelled": "\U0001f6ab Cancelled",
}

BUTTONS: tuple[tuple[str, Purpose], ...] = (("Review", "review"), ("Approve", "approve"), ("Reject", "reject"))


class Outcome(BaseModel):
    """How the action left pending, as the trigger saw it at that moment."""

    model_config = ConfigDict(extra="ignore")

    status: str
    decision: Literal["approved", "rejected", "modified"] | None = None
    decided_by: str | None = None
    via: str | None = None
    at: datetime | None = None
    reason: str | None = None

    @property
    def label(self) -> str:
        return OUTCOME_LABELS.get(self.decision or self.status, self.status)


class Notification(BaseModel):
    """A claimed outbox row (`claim_notifications`)."""

    model_config = ConfigDict(extra="ignore")

    id: int
    action_id: UUID
    kind: Literal["announce", "reminder", "escalation", "outcome"]
    episode: int
    nonce: UUID
    attempts: int
    attempt_token: UUID
    maybe_posted: bool
    details: dict[str, Any]
    action: ActionRecord
    messages: list[str]

    @property
    def ref(self) -> str:
        return self.nonce.hex[:8]


# --- what the messages say ---------------------------------------------------------------------------
def _when(moment: datetime, style: str = "R") -> str:
    """Discord renders this in each reader's own time zone."""
    return f"<t:{int(moment.timestamp())}:{style}>"


def _money(value: Any) -> str:
    try:
        return f"${Decimal(str(value)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _draft_preview(payload: dict[str, Any]) -> str:
    lines = []
    for key, value in payload.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        lines.append(f"{literal(key)}: {fit(literal(text), DRAFT_LINE_CHARS)}")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def action_embed(action: ActionRecord, ref: str, *, colour: int | None = None) -> Embed:
    impact = action.estimated_impact
    fields = [
        EmbedField(name="Tier", value=action.risk_level.value, inline=True),
        EmbedField(name="Agent", value=literal(action.agent), inline=True),
        EmbedField(name="Kind", value=literal(action.kind), inline=True),
        EmbedField(name="Recipients", value=f"{int(impact.get('recipients', 0)):,}", inline=True),
        EmbedField(name="Money", value=_money(impact.get("cost_usd", 0)), inline=True),
        EmbedField(name="Public", value=_yes(impact.get("public")), inline=True),
        EmbedField(name="Reversible", value=_yes(impact.get("reversible", True)), inline=True),
    ]
    if action.expires_at is not None:
        fields.append(
            EmbedField(
                name="Expires", value=f"{_when(action.expires_at)} ({_when(action.expires_at, 'f')})", inline=True
            )
        )
    confidence = action.metadata.get("confidence")
    if isinstance(confidence, (int, float)):
        fields.append(EmbedField(name="Model confidence", value=f"{confidence:.0%}", inline=True))
    if action.risk_reasons:
        fields.append(
            EmbedField(
                name="Why this tier",
                value="\n".join(
                    f"\u2022 {literal(str(reason.get('tier', '?')))} "
                    f"\u00b7 {literal(str(reason.get('dimension', '?')))}: "
                    f"{literal(str(reason.get('detail', '')))}"
                    for reason in action.risk_reasons
                ),
            )
        )
    if action.requested_action:
        fields.append(EmbedField(name="Draft", value=_draft_preview(action.requested_action)))
    reasoning = fit(literal(action.reasoning), REASONING_CHARS)
    return Embed(
        title=literal(action.summary),
        description=f"**Why**\n{reasoning}" if reasoning else None,
        color=TIER_COLOURS[action.risk_level] if colour is None else colour,
        fields=fields,
        footer=f"opsdesk \u00b7 action {action.id} \u00b7 ref {ref}",
        timestamp=action.requested_at,
    )


def post_message(notification: Notification, signer: LinkSigner, settings: Settings) -> WebhookMessage:
    """An announce, reminder or escalation: the action, and Review / Approve / Reject buttons."""
    action = notification.action
    if action.expires_at is None:
        raise InvalidInput(f"action {action.id} is pending without an expiry; its links cannot be signed")
    tier = action.risk_level
    if notification.kind == "announce":
        lead = (
            "Approval needed"
            if notification.episode == 1
            else "Back for approval: its facts changed after it was approved"
        )
    elif notification.kind == "reminder":
        lead = f"Reminder: waiting for a decision since {_when(action.requested_at)}"
    else:
        lead = "Escalation: this CRITICAL approval is about to expire"
    lines = []
    if notification.maybe_posted:
        lines.append(
            f"\u26a0\ufe0f Sent again after an interrupted attempt: an earlier copy (ref {notification.ref}) "
            "may exist and may not be updated when this is decided."
        )
    lines.append(
        f"{TIER_ICONS[tier]} **{lead}** \u00b7 {tier.value} \u00b7 {literal(action.agent)} \u00b7 "
        f"expires {_when(action.expires_at)}"
    )
    buttons = [
        LinkButton(label=label, url=signer.url(action.id, action.draft_hash, purpose, action.expires_at))
        for label, purpose in BUTTONS
    ]
    return WebhookMessage(
        content="\n".join(lines),
        embeds=[action_embed(action, notification.ref)],
        buttons=buttons,
        mention_role_id=settings.discord_escalation_role_id if tier is Tier.CRITICAL else None,
    )


def outcome_message(notification: Notification) -> WebhookMessage:
    """The edit once the action left pending: what happened, by whom, when; no buttons."""
    outcome = Outcome.model_validate(notification.details)
    action = notification.action
    content = f"**{outcome.label}**"
    if outcome.decided_by:
        content += f" by {literal(_one_line(outcome.decided_by))}"
        if outcome.via in VIA_LABELS:
            content += f" {VIA_LABELS[outcome.via]}"
    if outcome.at is not None:
        content += f" \u00b7 {_when(outcome.at, 'f')}"
    embed = action_embed(action, notification.ref, colour=SETTLED_COLOUR)
    extra = [EmbedField(name="Outcome", value=content)]
    if outcome.reason:
        extra.append(EmbedField(name="Reason", value=literal(outcome.reason)))
    if outcome.decision == "modified" and action.modifications:
        extra.append(EmbedField(name="Edited", value=literal(", ".join(sorted(action.modifications)))))
    embed.fields = extra + embed.fields
    return WebhookMessage(content=content, embeds=[embed], buttons=[])


# --- the sender -------------------------------------------------------------------------------------
