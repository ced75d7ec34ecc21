"""The email action kinds: `email.send` (one-to-one, transactional) and `email.campaign` (batched).

Recipients come from the source record the caller or agent read (the HubSpot contact, the ticket's
requester), never from model text; a reviewer may edit the subject and the body, never who gets it.
An action's `impact.recipients` must equal its recipient count, so the risk policy judges the real
reach. One approval covers every batch of a campaign.

An `email.send` may name a HubSpot deal or contact to log it on (`crm_note`): once Brevo took the
email, and only then, a LOW `hubspot.note` with what was really sent (the reviewer's edits
included) is queued, keyed to the email action, so the CRM never shows a follow-up that did not
happen (a rejected or failed email logs nothing).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping
from html import escape
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.errors import InvalidInput, OpsdeskError
from app.core.models import ActionMetadata, ActionRequest, Impact
from app.core.settings import Settings
from app.email.campaigns import CampaignSender
from app.email.quota import EmailQuota, QuotaExhausted
from app.kinds.base import ActionKind
from app.kinds.context import HandlerContext
from app.kinds.hubspot import HubSpotId
from integrations.brevo import SYSTEM, Address, CreditsExhausted, Message, OutcomeUncertain
from integrations.errors import IntegrationError, OutcomeUnknown, PermanentError

# Deliberately loose: Brevo is the judge of an address, and its refusals are recorded per recipient.
# This only keeps out what cannot be an address (and anything that could smuggle a second header).
_EMAIL = re.compile(r"^[^@\s<>,;\"'()]+@[^@\s<>,;\"'()]+\.[^@\s<>,;\"'()]+$")
OneLine = Annotated[str, Field(pattern=r"^[^\r\n]*$")]
log = logging.getLogger(__name__)


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254)
    name: OneLine | None = Field(None, max_length=200)

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        address = value.strip().lower()  # one spelling per address: a campaign sends each once
        if not _EMAIL.match(address):
            raise ValueError("is not an email address")
        return address


class EmailContent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: OneLine = Field(min_length=1, max_length=500)
    html: str = Field(min_length=1, max_length=500_000)
    text: str | None = Field(None, max_length=500_000)


class CrmNote(BaseModel):
    """The HubSpot record an email is logged on once it is sent."""

    model_config = ConfigDict(extra="forbid")

    object_type: Literal["contact", "deal"]
    object_id: HubSpotId


class EmailSendPayload(EmailContent):
    to: Recipient
    crm_note: CrmNote | None = None


class EmailCampaignPayload(EmailContent):
    recipients: list[Recipient] = Field(min_length=1, max_length=100_000)

    @field_validator("recipients")
    @classmethod
    def _each_once(cls, value: list[Recipient]) -> list[Recipient]:
        repeated = sorted(email for email, n in Counter(r.email for r in value).items() if n > 1)
        if repeated:
            raise ValueError(f"lists {len(repeated)} address(es) more than once, e.g. {repeated[0]}")
        return value


def _recipient_count(payload: Mapping[str, Any]) -> int:
    return len(payload["recipients"]) if "recipients" in payload else 1


def impact_with_recipients(payload: Mapping[str, Any], impact: Impact) -> Impact:
    """The caller states the reach; it must be the real one."""
    count = _recipient_count(payload)
    if impact.recipients != count:
        raise InvalidInput(
            f"impact.recipients is {impact.recipients} but the email goes to {count}", details={"recipients": count}
        )
    return impact


def send_email(ctx: HandlerContext) -> dict[str, Any]:
    payload = EmailSendPayload.model_validate(ctx.action.requested_action)
    message = Message(
        subject=payload.subject,
        html=payload.html,
        text=payload.text,
        to=Address(email=payload.to.email, name=payload.to.name),
        tags=[ctx.action.agent],
    )
    if ctx.settings.brevo_dry_run:
        return {"dry_run": True, "would_send": message.model_dump(mode="json", exclude_none=True)}
    brevo = ctx.clients.get(Settings.brevo_client)  # not configured: fails here, before any quota is taken
    window = ctx.settings.brevo_resend_window_seconds
    earlier = ctx.uncertain()
    if earlier["uncertain_since"] is not None and earlier["age_seconds"] > window:
        raise _past_the_window(earlier)  # a backlog or a stopped executor: too late to re-send safely
    quota = EmailQuota(ctx.db, ctx.settings)
    grant = quota.reserve(f"email.send:{ctx.action.id}", 1, "transactional")
    if grant.held < 1:
        why = "Brevo reported its credits spent" if grant.closed else f"all {grant.daily_limit} are used"
        raise QuotaExhausted(
            f"no email left on {grant.day} ({why}); it goes out on the next quota day",
            system=SYSTEM,
            retry_after=grant.seconds_to_next_day,
        )
    ctx.heartbeat()
    ctx.mark_dispatched()
    try:
        ids = brevo.send(message, idempotency_key=ctx.action.idempotency_key)
    except CreditsExhausted as exc:
        quota.close_day(exc.message)
        quota.release(grant)
        # Brevo's quota is spent, not the email at fault: it waits for the next quota day like
        # the replies after it (and a campaign's batch), instead of failing for good
        raise QuotaExhausted(
            f"Brevo reported its credits spent ({exc.message}); it goes out on the next quota day",
            system=SYSTEM,
            retry_after=grant.seconds_to_next_day,
        ) from exc
    except OutcomeUncertain as exc:
        # it may have gone out, so it stays counted; a retry reuses the idempotency key, which
        # protects it only within Brevo's window from the first send that may have gone out
        since = ctx.note_uncertain()
        if exc.retry_after is not None and since["age_seconds"] + exc.retry_after > window:
            raise _past_the_window(since) from exc
        raise
    except IntegrationError:
        quota.release(grant)  # refused, or it never reached Brevo
        raise
    sent: dict[str, Any] = {
        "message_id": ids[0] if ids else None,
        "to": payload.to.email,
        "quota_day": grant.day.isoformat(),
    }
    if payload.crm_note is not None:
        sent["crm_note"] = _log_in_crm(ctx, payload, payload.crm_note)
    return sent


def _log_in_crm(ctx: HandlerContext, payload: EmailSendPayload, on: CrmNote) -> dict[str, Any]:
    """Queue the note that logs the sent email. The email is out whatever happens here, so a
    failure to queue it is kept in the email's result, never turned into a failed send."""
    # HubSpot shows a note's body as HTML: plain text keeps its lines only as <br>
    body = (
        f"<p>opsdesk sent this email to {escape(payload.to.name or payload.to.email)}.<br>"
        f"Subject: {escape(payload.subject)}</p>"
    )
    body += f"<p>{escape(payload.text).replace(chr(10), '<br>')}</p>" if payload.text else payload.html
    note = ActionRequest(
        agent=ctx.action.agent,
        kind="hubspot.note",
        summary=f"Log the email sent to {payload.to.email}"[:1000],
        reasoning="The email went out; the CRM shows it.",
        dedupe_key=f"crm-note/{ctx.action.id}",
        payload={"object_type": on.object_type, "object_id": on.object_id, "body": body[:50_000]},
        metadata=ActionMetadata.model_validate({"email_action": str(ctx.action.id)}),
    )
    try:
        queued = ctx.follow_up(note)
    except OpsdeskError as exc:
        log.warning("action %s: sent, but its CRM note was not queued: %s", ctx.action.id, exc.message)
        return {"error": exc.message}
    return {"action_id": str(queued.id), "status": queued.status.value}


def _past_the_window(uncertain: Mapping[str, Any]) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"an attempt at {uncertain['uncertain_since']} may have sent it, and Brevo drops a repeated "
        "idempotency key for 30 minutes only: not sent again; check Brevo's log, then `opsdesk actions settle`",
        system=SYSTEM,
    )


def send_campaign(ctx: HandlerContext) -> dict[str, Any]:
    payload = EmailCampaignPayload.model_validate(ctx.action.requested_action)
    if not ctx.settings.brevo_dry_run:
        _ = ctx.clients.get(Settings.brevo_client)  # not configured: fail before planning anything
    sender = CampaignSender(
        ctx.db, ctx.settings, ctx.clients, worker_id=f"action:{ctx.action.id}", heartbeat=ctx.heartbeat
    )
    sender.plan(ctx.action.id, [Address(email=r.email, name=r.name) for r in payload.recipients])
    outcomes = sender.send_due(campaign_id=ctx.action.id, before_send=ctx.mark_dispatched)
    unknown = [outcome["batch_no"] for outcome in outcomes if outcome["status"] == "unknown"]
    if unknown:
        raise OutcomeUnknown(
            f"batch(es) {unknown} may or may not have gone out; settle them with `opsdesk brevo settle-batch`",
            system=SYSTEM,
        )
    stopped = [outcome for outcome in outcomes if outcome.get("stopped")]
    if stopped:
        raise PermanentError(
            f"Brevo refused batch {stopped[0]['batch_no']} as a whole; its "
            f"{stopped[0]['stopped']} recipients were not sent: {stopped[0]['error']}",
            system=SYSTEM,
        )
    return {"campaign": sender.campaign(ctx.action.id), "sent_now": outcomes}


EMAIL_KINDS: tuple[ActionKind, ...] = (
    ActionKind(
        name="email.send",
        description="Send one email to one recipient through Brevo (counts 1 against the daily quota)",
        payload_model=EmailSendPayload,
        handler=send_email,
        editable=frozenset({"subject", "html", "text"}),
        impact_for=impact_with_recipients,
    ),
    ActionKind(
        name="email.campaign",
        description="Send one email to a list through Brevo, in batches over as many days as the quota needs",
        payload_model=EmailCampaignPayload,
        handler=send_campaign,
        editable=frozenset({"subject", "html", "text"}),
        impact_for=impact_with_recipients,
    ),
)
