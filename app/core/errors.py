"""The one exception tree of opsdesk.

    OpsdeskError                    base; carries an HTTP status and a CLI exit code
    ├── ConfigError                 a setting is missing or malformed            (exit 2)
    ├── DatabaseError               the database failed                     503  (exit 3)
    │   ├── DatabaseUnreachable     no answer from DATABASE_URL/SUPABASE_URL 503 (exit 11)
    │   ├── DatabaseAuthRefused     the database refused our key or user    503  (exit 5)
    │   ├── StatementTimeout        a call outlasted the statement timeout  503
    │   └── SchemaMismatch          schema.sql is not applied / out of date 503
    │       ├── SchemaMissing       not applied (exit 3)
    │       └── SchemaOutdated      applied, but older than this opsdesk    (exit 12)
    ├── InvalidInput                bad request or bad parameters           422
    ├── Unauthorized                missing or wrong API token              401
    ├── Forbidden                   a token that does not grant this        403
    ├── NotFound                    no such record                          404
    ├── Conflict                    the record moved on (already decided)   409
    │   └── StaleAttempt            a worker's attempt was superseded       409
    │       └── SentBack            ...by its own send-back to pending      409
    ├── Gone                        the approval expired                    410
    └── PayloadTooLarge             request body over the limit             413

Driver and SDK errors are wrapped `from exc` so their message reaches logs but never a secret.
"""

from __future__ import annotations

from typing import Any

from app.core.untrusted import storable, storable_text


class OpsdeskError(Exception):
    status_code: int = 500
    code: str = "internal_error"
    exit_code: int = 1

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        # messages and details often carry an outside system's words, and end up in the database
        # (an action's last error, a run's error): made storable here, once for every error
        message = storable_text(message)
        super().__init__(message)
        self.message = message
        self.details = storable(details) if details else {}


class ConfigError(OpsdeskError):
    status_code = 500
    code = "config_error"
    exit_code = 2


class DatabaseError(OpsdeskError):
    status_code = 503
    code = "database_error"
    exit_code = 3


class DatabaseUnreachable(DatabaseError):
    code = "database_unreachable"
    exit_code = 11


class DatabaseAuthRefused(DatabaseError):
    code = "database_auth_refused"
    exit_code = 5


class StatementTimeout(DatabaseError):
    """The database stopped the call at its statement timeout; it changed nothing."""

    code = "statement_timeout"


class SchemaMismatch(DatabaseError):
    code = "schema_mismatch"


class SchemaMissing(SchemaMismatch):
    code = "schema_missing"


class SchemaOutdated(SchemaMismatch):
    code = "schema_outdated"
    exit_code = 12


class InvalidInput(OpsdeskError):
    status_code = 422
    code = "invalid_input"
    exit_code = 4


class Unauthorized(OpsdeskError):
    status_code = 401
    code = "unauthorized"
    exit_code = 5


class Forbidden(OpsdeskError):
    status_code = 403
    code = "forbidden"
    exit_code = 5


class NotFound(OpsdeskError):
    status_code = 404
    code = "not_found"
    exit_code = 6


class Conflict(OpsdeskError):
    status_code = 409
    code = "conflict"
    exit_code = 7


class StaleAttempt(Conflict):
    code = "stale_attempt"


class SentBack(StaleAttempt):
    """A handler found the facts changed since approval and sent its action back to pending: the
    attempt is over and has no outcome to record."""

    code = "sent_back"


class Gone(OpsdeskError):
    status_code = 410
    code = "expired"
    exit_code = 8


class PayloadTooLarge(OpsdeskError):
    status_code = 413
    code = "payload_too_large"
    exit_code = 4


# SQLSTATE codes raised by schema.sql functions -> the exception they mean.
SQLSTATE_ERRORS: dict[str, type[OpsdeskError]] = {
    "OD404": NotFound,
    "OD409": Conflict,
    "OD410": Gone,
    "OD422": InvalidInput,
    "OD499": StaleAttempt,
}


class IntegrationError(OpsdeskError):
    """An outside system failed. `retryable` says whether trying again can help."""

    status_code = 502
    code = "integration_error"
    exit_code = 9
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        system: str,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{system}: {message}", details=details)
        self.system = system
        self.retry_after = retry_after


class TransientError(IntegrationError):
    """5xx, timeouts, connection errors: worth another try with backoff."""

    retryable = True


class RateLimited(TransientError):
    """429: wait for Retry-After; waiting does not use up an attempt."""

    code = "rate_limited"


class CircuitOpen(TransientError):
    """The breaker for this system is open after repeated failures."""

    status_code = 503
    code = "circuit_open"


class PermanentError(IntegrationError):
    """The outside system refused the request itself (4xx): trying again cannot help."""


class OutcomeUnknown(IntegrationError):
    """The call may or may not have taken effect; a person must settle it."""

    code = "outcome_unknown"


class ModelOutputInvalid(IntegrationError):
    """Claude's answer did not fit the schema, even after one repair request: a failed draft."""

    code = "model_output_invalid"


class BudgetExceeded(OpsdeskError):
    """The call could pass today's LLM spend cap (LLM_DAILY_BUDGET_USD), so it was not made.

    429, not 402: like a rate limit it lifts by itself (at midnight in the budget time zone,
    given as `retry_after`), and nothing is owed to anyone; 402 would tell a client to pay."""

    status_code = 429
    code = "llm_budget_exceeded"
    exit_code = 10

    def __init__(
        self, message: str, *, retry_after: float | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
