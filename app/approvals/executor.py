"""The executor: runs approved and auto-run actions, each exactly once.

Work is claimed in the database (`claim_actions`: FOR UPDATE SKIP LOCKED, a lease, a fresh attempt
token). Handlers renew the lease before each outside request (`ctx.heartbeat`). Finishing presents
the token, so a worker that stalled past its lease can never overwrite a newer attempt's outcome.
Expired leases are recovered on every cycle: back to `approved` when the handler had not reached
the outside world, `unknown` when it may have.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from app.approvals import sql
from app.approvals.prerun import PreRunCheck, default_checks, send_back
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.database import Database
from app.core.errors import SentBack, StaleAttempt
from app.core.models import ActionRequest, SubmitResult
from app.core.settings import Settings
from app.kinds.base import ActionKind
from app.kinds.context import ClaimedAction, HandlerContext
from app.kinds.registry import kind_registry
from integrations.errors import IntegrationError, OutcomeUnknown, RateLimited, TransientError
from integrations.untrusted import storable, storable_text

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class Executor:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        kinds: Mapping[str, ActionKind] | None = None,
        worker_id: str | None = None,
        clients: Clients | None = None,
        rng: Callable[[], float] = random.random,
        checks: Sequence[PreRunCheck] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.kinds = kinds if kinds is not None else kind_registry()
        self.worker_id = worker_id or default_worker_id()
        self.clients = clients or Clients(settings, db)
        self._rng = rng
        self.checks = tuple(checks) if checks is not None else default_checks(settings)

    def close(self) -> None:
        self.clients.close()

    def recover_leases(self) -> list[dict[str, Any]]:
        recovered = sql.recover_expired_leases(self.db, actor=f"lease-recovery:{self.worker_id}", limit=100)
        return list(recovered["recovered"])

    def run_once(self) -> int:
        """One cycle: recover lost leases, claim a batch, run it. Returns how many actions ran."""
        self.recover_leases()
        claimed = sql.claim_actions(
            self.db,
            worker=self.worker_id,
            lease_seconds=self.settings.executor_lease_seconds,
            limit=self.settings.executor_batch_size,
        )
        for row in claimed:
            self.run_action(ClaimedAction.model_validate(row))
        return len(claimed)

    def run_until_idle(self) -> int:
        total = 0
        while (ran := self.run_once()) > 0:
            total += ran
        return total

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # a database outage must not kill the worker thread
                log.exception("executor cycle failed")
                ran = 0
            if ran == 0:
                stop.wait(self.settings.executor_poll_seconds)

    def run_action(self, action: ClaimedAction) -> None:
        kind = self.kinds.get(action.kind)
        try:
            if kind is None:
                self._finish(action, "failed", error=f"no handler for kind {action.kind!r}")
                return
            if self._sent_back(action, kind):
                return
            result = kind.handler(self._context(action, kind))
        except SentBack as exc:
            log.info("action %s: %s", action.id, exc.message)
            return
        except StaleAttempt:
            log.warning("action %s: attempt superseded before it finished; dropping it", action.id)
            return
        except RateLimited as exc:
            self._finish(action, "retry", error=str(exc), retry_in=exc.retry_after or 1.0, count=False)
            return
        except TransientError as exc:
            self._finish(action, "retry", error=str(exc), retry_in=self._backoff(action.attempts, exc))
            return
        except OutcomeUnknown as exc:
            self._finish(action, "unknown", error=str(exc))
            return
        except IntegrationError as exc:
            self._finish(action, "failed", error=str(exc))
            return
        except Exception as exc:
            log.exception("action %s: handler %s crashed", action.id, action.kind)
            self._finish(action, "failed", error=f"handler crashed: {type(exc).__name__}: {exc}")
            return
        self._finish(action, "succeeded", result=result)

    def _context(self, action: ClaimedAction, kind: ActionKind) -> HandlerContext:
        """The handler's context: its action, and the queue's operations bound to this attempt."""
        token = action.attempt_token

        def follow_up(request: ActionRequest) -> SubmitResult:
            return ApprovalQueue(self.db, self.settings).submit(request, actor=f"action:{action.id}")

        def send_back_with(payload: dict[str, Any], why: str) -> NoReturn:
            send_back(self.db, self.settings, action, kind, payload, why)

        return HandlerContext(
            db=self.db,
            settings=self.settings,
            action=action,
            mark_dispatched=lambda: sql.mark_dispatched(self.db, id=action.id, attempt_token=token),
            heartbeat=lambda: sql.renew_action_lease(
                self.db,
                id=action.id,
                attempt_token=token,
                lease_seconds=self.settings.executor_lease_seconds,
            ),
            clients=self.clients,
            send_back=send_back_with,
            follow_up=follow_up,
            uncertain=lambda: sql.uncertain_dispatch(self.db, id=action.id, attempt_token=token),
            note_uncertain=lambda: sql.note_uncertain_dispatch(self.db, id=action.id, attempt_token=token),
        )

    def _sent_back(self, action: ClaimedAction, kind: ActionKind) -> bool:
        """Runs the pre-run checks; the first that objects sends the action back to pending."""
        for check in self.checks:
            send_back = check(action, kind)
            if send_back is None:
                continue
            sql.requeue_action(
                self.db,
                id=action.id,
                attempt_token=action.attempt_token,
                risk_level=send_back.tier.value,
                risk_reasons=[reason.model_dump(mode="json") for reason in send_back.reasons],
                ttl_seconds=self.settings.approval_ttl_hours(send_back.tier.value) * 3600,
                reason=send_back.why,
            )
            log.info("action %s: back to pending instead of running: %s", action.id, send_back.why)
            return True
        return False

    def _backoff(self, attempt: int, exc: TransientError) -> float:
        if exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(
            self.settings.executor_backoff_max_seconds,
            self.settings.executor_backoff_base_seconds * 2 ** max(attempt - 1, 0),
        )
        return float(ceiling * (0.5 + self._rng() / 2))  # jitter: spread retries of many actions

    def _finish(
        self,
        action: ClaimedAction,
        outcome: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        retry_in: float | None = None,
        count: bool = True,
    ) -> None:
        try:
            sql.finish_action(
                self.db,
                id=action.id,
                attempt_token=action.attempt_token,
                outcome=outcome,
                result=storable(result),  # what an outside system answered: its text made storable
                error=storable_text(error) if error is not None else None,
                retry_in_seconds=retry_in,
                count_attempt=count,
            )
        except StaleAttempt:
            log.warning("action %s: a newer attempt took over; outcome %s not recorded", action.id, outcome)
