"""Discord notifications for the approval queue: what each message says, and the sender that
drains the outbox (schema.sql, "Discord notifications").

The database decides what must be said and when (a trigger queues the announce and the outcome in
the transaction that changes the action; `enqueue_reminders` adds reminders); this module only
turns a claimed row into a message, sends it and records Discord's answer. Links travel only in
link buttons, never in text, because Discord's unfurler fetches URLs it finds in message content.
Every text opsdesk did not write itself (the summary, reasoning and draft, the reasons' details, a
reviewer's name and reason, a cancellation's reason) goes in through `integrations.discord_text.literal`:
shown as written, it cannot link, format or ping.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from app.approval_links import LinkSigner
from app.client_configs import discord_config
from app.database import Database
from app.errors import (
    CircuitOpen,
    ConfigError,
    IntegrationError,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    StaleAttempt,
    TransientError,
)
from app.executor import default_worker_id
from app.models import ActionRecord, Tier
from app.settings import Settings
from integrations.discord import (
    UNKNOWN_MESSAGE,
    DiscordClient,
    Embed,
    EmbedField,
    LinkButton,
    WebhookMessage,
    call_budget_seconds,
    webhook_unusable,
)
from integrations.discord_text import fit, literal
from integrations.errors import InvalidRequest

log = logging.getLogger(__name__)

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
        for label, purpose in (("Review", "review"), ("Approve", "approve"), ("Reject", "reject"))
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
class NotificationSender:
    """Drains the outbox: recover lost leases, claim, build, post or edit, record."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        client: DiscordClient | None = None,
        signer: LinkSigner | None = None,
        worker_id: str | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if client is None:
            client = DiscordClient(discord_config(settings))
        self.db = db
        self.settings = settings
        self.client = client
        self.signer = signer or LinkSigner(settings)
        self.worker_id = worker_id or f"discord:{default_worker_id()}"
        self._rng = rng
        # A post outlives its lease only if the sender stalls; then it is taken over, and the late
        # answer is still recorded (record_notification_sent).
        self.lease_seconds = call_budget_seconds(settings.discord_timeout_seconds) + 30
        # Set when Discord says the webhook is gone or its token is wrong. Only a new
        # DISCORD_WEBHOOK_URL (a restart) can fix that, so this process stops calling it: the rows
        # stay queued in the database meanwhile.
        self.disabled: str | None = None

    def close(self) -> None:
        self.client.close()

    def enqueue_reminders(self) -> dict[str, int]:
        return self.db.call(
            "enqueue_reminders",
            reminder_after_seconds=self.settings.approval_reminder_hours * 3600,
            escalate_before_seconds=self.settings.escalate_before_expiry_hours * 3600,
            limit=500,
        )

    def run_once(self) -> int:
        """One cycle; returns how many notifications were claimed."""
        if self.disabled is not None:
            return 0
        self.db.call("recover_notification_leases", actor=self.worker_id, limit=100)
        claimed = self.db.call(
            "claim_notifications",
            worker=self.worker_id,
            lease_seconds=self.lease_seconds,
            limit=self.settings.discord_batch_size,
        )
        for row in claimed:
            self.deliver(Notification.model_validate(row))
        return len(claimed)

    def run_until_idle(self) -> int:
        total = 0
        while (claimed := self.run_once()) > 0:
            total += claimed
        return total

    def deliver(self, notification: Notification) -> None:
        try:
            if self.disabled is not None:
                self._reschedule(notification, self.disabled, self.settings.discord_backoff_max_seconds, count=False)
            elif notification.kind == "outcome":
                self._edit(notification)
            else:
                self._post(notification)
        except StaleAttempt:
            log.warning("notification %s: another sender took over after this one's lease ran out", notification.id)

    def _post(self, notification: Notification) -> None:
        try:
            message = post_message(notification, self.signer, self.settings)
            # From here on a crash leaves "may have been posted" behind, never a silent repeat.
            self.db.call("mark_notification_dispatched", id=notification.id, attempt_token=notification.attempt_token)
            message_id = self.client.execute(message)
        except (InvalidInput, ConfigError, InvalidRequest) as exc:
            self._fail(notification, exc.message)
            return
        except IntegrationError as exc:
            self._call_failed(notification, exc)
            return
        self.db.call(
            "record_notification_sent",
            id=notification.id,
            attempt_token=notification.attempt_token,
            message_id=message_id,
        )

    def _edit(self, notification: Notification) -> None:
        message = outcome_message(notification)
        edited: list[str] = []
        try:
            for message_id in notification.messages:
                try:
                    self.client.edit(message_id, message)
                except PermanentError as exc:
                    if exc.details.get("discord_code") != UNKNOWN_MESSAGE:
                        raise
                    log.warning(
                        "notification %s: message %s was deleted in Discord; nothing to edit",
                        notification.id,
                        message_id,
                    )
                edited.append(message_id)
        except InvalidRequest as exc:
            self._fail(notification, exc.message)
            return
        except IntegrationError as exc:
            self._call_failed(notification, exc)
            return
        self.db.call(
            "record_outcome_edited", id=notification.id, attempt_token=notification.attempt_token, message_ids=edited
        )

    def _call_failed(self, notification: Notification, exc: IntegrationError) -> None:
        if isinstance(exc, (RateLimited, CircuitOpen)):
            self._reschedule(notification, str(exc), exc.retry_after or 1.0, count=False)
        elif isinstance(exc, OutcomeUnknown):
            self._reschedule(notification, str(exc), self._backoff(notification.attempts), maybe_posted=True)
        elif isinstance(exc, TransientError):
            self._reschedule(notification, str(exc), self._backoff(notification.attempts))
        elif isinstance(exc, PermanentError) and webhook_unusable(exc):
            self.disabled = f"{exc}: fix DISCORD_WEBHOOK_URL and restart opsdesk"
            log.error("Discord notifications stopped: %s", self.disabled)
            self._reschedule(notification, self.disabled, self.settings.discord_backoff_max_seconds, count=False)
        else:
            self._fail(notification, str(exc))

    def _backoff(self, attempt: int) -> float:
        ceiling = min(
            self.settings.discord_backoff_max_seconds,
            self.settings.discord_backoff_base_seconds * 2 ** max(attempt - 1, 0),
        )
        return ceiling * (0.5 + self._rng() / 2)  # jitter: spread the retries of many notifications

    def _reschedule(
        self, notification: Notification, error: str, retry_in: float, *, count: bool = True, maybe_posted: bool = False
    ) -> None:
        self.db.call(
            "reschedule_notification",
            id=notification.id,
            attempt_token=notification.attempt_token,
            error=error,
            retry_in_seconds=max(retry_in, 1.0),
            count_attempt=count,
            max_attempts=self.settings.discord_max_attempts,
            maybe_posted=maybe_posted,
        )

    def _fail(self, notification: Notification, error: str) -> None:
        log.error("notification %s (%s) failed for good: %s", notification.id, notification.kind, error)
        self.db.call("fail_notification", id=notification.id, attempt_token=notification.attempt_token, error=error)
