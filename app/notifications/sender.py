"""The sender that drains the Discord outbox (schema.sql, "Discord notifications"): claim the due
rows, post or edit each message (app.notifications.messages says what it is), and record Discord's
answer. The database decides what must be said and when (a trigger queues the announce and the
outcome in the transaction that changes the action; `enqueue_reminders` adds reminders).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from app.approvals.executor import default_worker_id
from app.approvals.links import LinkSigner
from app.core.database import Database
from app.core.errors import ConfigError, InvalidInput, StaleAttempt
from app.core.settings import ClientDeps, Settings
from app.notifications import sql
from app.notifications.messages import Notification, outcome_message, post_message
from integrations.discord import (
    UNKNOWN_MESSAGE,
    DiscordClient,
    call_budget_seconds,
    webhook_unusable,
)
from integrations.errors import (
    CircuitOpen,
    IntegrationError,
    InvalidRequest,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)

log = logging.getLogger(__name__)


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
            client = settings.discord_client(ClientDeps())
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
        return sql.enqueue_reminders(
            self.db,
            reminder_after_seconds=self.settings.approval_reminder_hours * 3600,
            escalate_before_seconds=self.settings.escalate_before_expiry_hours * 3600,
            limit=500,
        )

    def run_once(self) -> int:
        """One cycle; returns how many notifications were claimed."""
        if self.disabled is not None:
            return 0
        sql.recover_notification_leases(self.db, actor=self.worker_id, limit=100)
        claimed = sql.claim_notifications(
            self.db,
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
            sql.mark_notification_dispatched(self.db, id=notification.id, attempt_token=notification.attempt_token)
            message_id = self.client.execute(message)
        except (InvalidInput, ConfigError, InvalidRequest) as exc:
            self._fail(notification, exc.message)
            return
        except IntegrationError as exc:
            self._call_failed(notification, exc)
            return
        sql.record_notification_sent(
            self.db,
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
        sql.record_outcome_edited(
            self.db, id=notification.id, attempt_token=notification.attempt_token, message_ids=edited
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
        return float(ceiling * (0.5 + self._rng() / 2))  # jitter: spread the retries of many notifications

    def _reschedule(
        self, notification: Notification, error: str, retry_in: float, *, count: bool = True, maybe_posted: bool = False
    ) -> None:
        sql.reschedule_notification(
            self.db,
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
        sql.fail_notification(self.db, id=notification.id, attempt_token=notification.attempt_token, error=error)
