"""Campaign batches: one approved `email.campaign` planned over the quota days, and the job that
sends the batches due today (`opsdesk brevo send-due`, and the scheduler).

Planning (`plan_email_campaign`, once per campaign) puts the recipients into batches of at most
BREVO_BATCH_SIZE, each day filled up to what campaigns may still use of it. Sending a batch claims
it (SKIP LOCKED, a lease), reserves quota for it (what the day cannot take moves to the next day
with room), marks the recipients of each request `sending` before the request and records Brevo's
answer per recipient after it. A worker that dies in between leaves those recipients, and their
batch, `unknown`: lease recovery never sends them again; a person settles them. Before each request
the batch's lease is renewed (and the caller's, through `heartbeat`), so a long batch (splits,
retries with backoff) is never taken for a dead worker's.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict

from app.clients import Clients
from app.core.database import Database
from app.core.errors import StaleAttempt
from app.core.settings import Settings
from app.email import sql
from app.email.quota import EmailQuota
from integrations.brevo import (
    MAX_VERSIONS_PER_REQUEST,
    Address,
    BrevoClient,
    BrevoRefused,
    CreditsExhausted,
    Message,
    OutcomeUncertain,
)
from integrations.errors import TransientError

log = logging.getLogger(__name__)

_REQUEST_NAMESPACE = uuid5(NAMESPACE_URL, "https://opsdesk.invalid/brevo-requests")
# A transient failure (no connection, 429, the breaker open) retries the batch after this long at
# the earliest; the scheduled job runs every hour, so the retry lands on one of its runs.
RETRY_DELAY_SECONDS = 900.0
# Brevo refuses a whole request with 400 when one address is bad. Halving the request finds the bad
# addresses in about log2(n) requests each; this caps the extra requests one batch may make.
# A 400 that blames no address (the content, the sender) stops the batch instead.
SPLIT_REQUESTS = 20


def request_key(campaign_id: UUID, batch_no: int, emails: Sequence[str]) -> str:
    """The idempotencyKey of one request: the same recipients of the same batch always get the same
    key (a repeat within Brevo's 30 minutes is dropped), a different split its own."""
    digest = hashlib.sha256("\n".join(emails).encode()).hexdigest()
    return str(uuid5(_REQUEST_NAMESPACE, f"{campaign_id}:{batch_no}:{digest}"))


class CampaignContent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subject: str
    html: str
    text: str | None = None


class ClaimedBatch(BaseModel):
    campaign_id: UUID
    batch_no: int
    send_on: date
    attempt_token: UUID
    attempts: int
    content: CampaignContent

    @property
    def lease(self) -> dict[str, Any]:
        """What names this batch's claim in every call that must still hold it."""
        return {"campaign_id": self.campaign_id, "batch_no": self.batch_no, "attempt_token": self.attempt_token}


class BatchGrant(BaseModel):
    pending: int
    granted: int
    recipients: list[Address]


@dataclass(frozen=True)
class Stop:
    """How a batch's attempt ends: where its unsent recipients go, and why."""

    rest: Literal["next_day", "later", "stop"]
    error: str | None
    retry_in: float = 0.0


class CampaignSender:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clients: Clients,
        *,
        worker_id: str,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        """`heartbeat`: the caller's own lease renewal (an executor attempt), run before each request."""
        self.db = db
        self.settings = settings
        self.clients = clients
        self.worker_id = worker_id
        self.heartbeat = heartbeat
        self.quota = EmailQuota(db, settings)

    def plan(self, campaign_id: UUID, recipients: Sequence[Address]) -> dict[str, Any]:
        """Batches for the campaign's recipients (the first call plans, later calls return that plan)."""
        return sql.plan_email_campaign(
            self.db,
            campaign_id=campaign_id,
            recipients=[recipient.model_dump(exclude_none=True) for recipient in recipients],
            batch_size=self.settings.brevo_batch_size,
            **self.quota.limits,
        )

    def campaign(self, campaign_id: UUID) -> dict[str, Any] | None:
        return sql.get_email_campaign(self.db, campaign_id=campaign_id)

    def send_due(
        self, *, campaign_id: UUID | None = None, before_send: Callable[[], None] | None = None
    ) -> list[dict[str, Any]]:
        """Send every batch due today (only this campaign's when given); `before_send` runs before
        the first request that could reach Brevo. Returns how each batch ended."""
        sql.recover_campaign_batches(self.db, actor=f"lease-recovery:{self.worker_id}", limit=100, **self.quota.limits)
        # a missing API key fails here, before any batch is claimed
        brevo = None if self.settings.brevo_dry_run else self.clients.get(Settings.brevo_client)
        outcomes: list[dict[str, Any]] = []
        while claimed := sql.claim_campaign_batches(
            self.db,
            worker=self.worker_id,
            lease_seconds=self.settings.executor_lease_seconds,
            limit=10,
            time_zone=self.settings.email_quota_timezone,
            campaign_id=campaign_id,
        ):
            for row in claimed:
                batch = ClaimedBatch.model_validate(row)
                try:
                    outcomes.append(self._send_batch(batch, brevo, before_send))
                except StaleAttempt:
                    if self.heartbeat is not None:
                        self.heartbeat()  # the caller's attempt superseded too: its StaleAttempt ends the run
                    log.warning("campaign %s batch %s: a newer attempt took over", batch.campaign_id, batch.batch_no)
        return outcomes

    def _send_batch(
        self, batch: ClaimedBatch, brevo: BrevoClient | None, before_send: Callable[[], None] | None
    ) -> dict[str, Any]:
        grant = BatchGrant.model_validate(
            sql.reserve_campaign_batch(self.db, **batch.lease, dry_run=self.settings.brevo_dry_run, **self.quota.limits)
        )
        # whatever the day could not take (nothing, when all was granted) waits for the next day with room
        stop = Stop(
            rest="next_day",
            error=None
            if grant.granted == grant.pending
            else f"today's campaign quota took {grant.granted} of {grant.pending}",
        )
        if brevo is None:
            self._record(batch, [{"email": r.email, "status": "dry_run"} for r in grant.recipients])
        elif grant.recipients:
            if before_send is not None:
                before_send()
            budget = [SPLIT_REQUESTS]
            for start in range(0, len(grant.recipients), MAX_VERSIONS_PER_REQUEST):
                chunk = grant.recipients[start : start + MAX_VERSIONS_PER_REQUEST]
                if halted := self._send_chunk(batch, brevo, chunk, budget):
                    stop = halted
                    break
        return sql.finish_campaign_batch(
            self.db,
            **batch.lease,
            rest=stop.rest,
            retry_in_seconds=stop.retry_in,
            error=stop.error,
            **self.quota.limits,
        )

    def _send_chunk(
        self, batch: ClaimedBatch, brevo: BrevoClient, chunk: list[Address], budget: list[int]
    ) -> Stop | None:
        """One request for `chunk`; returns a Stop when the rest of the batch must wait."""
        emails = [recipient.email for recipient in chunk]
        sql.renew_campaign_batch_lease(self.db, **batch.lease, lease_seconds=self.settings.executor_lease_seconds)
        if self.heartbeat is not None:
            self.heartbeat()
        sql.campaign_recipients_sending(self.db, **batch.lease, emails=emails)
        content = batch.content
        message = Message(
            subject=content.subject,
            html=content.html,
            text=content.text,
            versions=chunk,
            tags=[f"campaign-{batch.campaign_id}"],
        )
        try:
            ids = brevo.send(message, idempotency_key=request_key(batch.campaign_id, batch.batch_no, emails))
        except CreditsExhausted as exc:
            self.quota.close_day(exc.message)
            self._record(batch, _each(emails, "pending"))
            return Stop(rest="next_day", error=exc.message)
        except BrevoRefused as exc:
            if not exc.blames_recipient(emails):  # no address is at fault, so none is refused for it
                self._record(batch, _each(emails, "pending"))
                if exc.status == 400:  # the request itself (a template parameter, the subject): no retry helps
                    return Stop(rest="stop", error=exc.message)
                return Stop(rest="later", error=exc.message, retry_in=RETRY_DELAY_SECONDS)  # the key, the account
            if len(chunk) == 1:
                self._record(batch, _each(emails, "refused", error_code=exc.brevo_code, error=exc.message))
                return None
            if budget[0] < 2:
                self._record(batch, _each(emails, "pending"))
                return Stop(
                    rest="next_day",
                    error=f"Brevo refused a request of {len(chunk)} and the split budget is spent: {exc.message}",
                )
            budget[0] -= 2
            self._record(batch, _each(emails, "pending"))  # nothing of it went out: try each half
            half = len(chunk) // 2
            return self._send_chunk(batch, brevo, chunk[:half], budget) or self._send_chunk(
                batch, brevo, chunk[half:], budget
            )
        except OutcomeUncertain as exc:
            self._record(batch, _each(emails, "unknown", error=exc.message))
            return Stop(rest="later", error=exc.message, retry_in=RETRY_DELAY_SECONDS)
        except TransientError as exc:  # no connection, 429, breaker open: nothing went out
            self._record(batch, _each(emails, "pending"))
            return Stop(rest="later", error=exc.message, retry_in=max(exc.retry_after or 0.0, RETRY_DELAY_SECONDS))
        # Brevo answers one message id per version; anything else is kept whole on each recipient
        per_recipient = ids if len(ids) == len(emails) else [",".join(ids) or None] * len(emails)
        self._record(
            batch,
            [
                {"email": email, "status": "sent", "message_id": message_id}
                for email, message_id in zip(emails, per_recipient, strict=True)
            ],
        )
        return None

    def _record(self, batch: ClaimedBatch, results: list[dict[str, Any]]) -> None:
        sql.record_campaign_recipients(self.db, **batch.lease, results=results)

    def settle(
        self, campaign_id: UUID, batch_no: int, outcome: Literal["sent", "not_sent"], *, actor: str, reason: str
    ) -> dict[str, Any]:
        """A person's verdict on an `unknown` batch after checking Brevo's logs."""
        return sql.settle_campaign_batch(
            self.db,
            campaign_id=campaign_id,
            batch_no=batch_no,
            outcome=outcome,
            actor=actor,
            reason=reason,
            **self.quota.limits,
        )


def _each(emails: Sequence[str], status: str, **fields: str | None) -> list[dict[str, Any]]:
    return [{"email": email, "status": status, **fields} for email in emails]
