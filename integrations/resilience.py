"""The discipline every outside call shares: retries with backoff and jitter on retryable errors
only, Retry-After honoured, and a circuit breaker per system.

The breaker is a few lines of our own rather than a library because its clock must be injectable:
tests open and close it without sleeping. It lives in process memory on purpose: it protects this
process from hammering a failing system and holds nothing that must survive a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from integrations.errors import CircuitOpen, IntegrationError, OutcomeUnknown

T = TypeVar("T")


class CircuitBreaker:
    """Closed -> open after `failure_threshold` failures in a row; one trial call after
    `reset_after` seconds (half-open); a success closes it, a failure opens it again."""

    def __init__(
        self,
        system: str,
        *,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.system = system
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._clock() - self._opened_at >= self.reset_after:
                return "half_open"
            return "open"

    def before_call(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            waited = self._clock() - self._opened_at
            if waited < self.reset_after or self._trial_running:
                raise CircuitOpen(
                    f"circuit open after {self._failures} failures; retrying in "
                    f"{max(self.reset_after - waited, 0):.0f}s",
                    system=self.system,
                    retry_after=max(self.reset_after - waited, 0.0),
                )
            self._trial_running = True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def abandon_trial(self) -> None:
        """The call failed on our side (our database, a lost lease, a bug): it says nothing about
        the outside system, but a half-open trial is over, so the next call may trial again."""
        with self._lock:
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_running = False
            if self._opened_at is not None or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class _WaitRetryAfter:
    """Wait what the server asked for, else exponential backoff with jitter."""

    def __init__(self, base: float, cap: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=base, max=cap, jitter=base)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, IntegrationError) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)


def call_with_retries(
    call: Callable[[], T],
    *,
    breaker: CircuitBreaker,
    attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    max_retry_after: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `call` behind the breaker. Retry only retryable IntegrationErrors, and only when the
    wait the server asks for is short; a longer wait is left to the caller (the executor
    reschedules the action in the database instead of holding a worker)."""

    def retryable(exc: BaseException) -> bool:
        return (
            isinstance(exc, IntegrationError)
            and exc.retryable
            and not isinstance(exc, CircuitOpen)
            and (exc.retry_after is None or exc.retry_after <= max_retry_after)
        )

    def guarded() -> T:
        breaker.before_call()
        try:
            result = call()
        except IntegrationError as exc:
            # a refusal (4xx) is the system answering: the request was at fault. No answer after
            # sending (OutcomeUnknown: a timeout, a gateway's 5xx) is the system failing, even if
            # it is not retried here for fear of doing it twice
            if exc.retryable or isinstance(exc, OutcomeUnknown):
                breaker.record_failure()
            else:
                breaker.record_success()
            raise
        except BaseException:
            # anything else (our database, a lost lease, a bug) is not the system's failure, but
            # it must end a half-open trial, or the breaker would refuse every later call until
            # the process restarts
            breaker.abandon_trial()
            raise
        breaker.record_success()
        return result

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=_WaitRetryAfter(base_delay, max_delay),
        retry=retry_if_exception(retryable),
        sleep=sleep,
        reraise=True,
    )
    return retrying(guarded)
