"""opsdesk's own exception tree, and the one place any known error gets its HTTP status, its
`code` and its CLI exit code (`describe`).

    OpsdeskError                    the app's errors; each carries its status and exit code
    ├── ConfigError                 a setting is missing or malformed       500  (exit 2)
    ├── DatabaseError               the database failed                     503  (exit 3)
    │   ├── DatabaseUnreachable     no answer from DATABASE_URL/SUPABASE_URL 503 (exit 11)
    │   ├── DatabaseAuthRefused     the database refused our key or user    503  (exit 5)
    │   ├── StatementTimeout        a call outlasted the statement timeout  503
    │   └── SchemaMismatch          schema.sql is not applied / out of date 503
    │       ├── SchemaMissing       not applied (exit 3)
    │       └── SchemaOutdated      applied, but older than this opsdesk    (exit 12)
    ├── InvalidInput                bad request or bad parameters           422  (exit 4)
    ├── Unauthorized                missing or wrong API token              401  (exit 5)
    ├── Forbidden                   a token that does not grant this        403  (exit 5)
    ├── NotFound                    no such record                          404  (exit 6)
    ├── Conflict                    the record moved on (already decided)   409  (exit 7)
    │   └── StaleAttempt            a worker's attempt was superseded       409
    │       └── SentBack            ...by its own send-back to pending      409
    ├── Gone                        the approval expired                    410  (exit 8)
    ├── PayloadTooLarge             request body over the limit             413  (exit 4)
    └── BudgetExceeded              the call could pass today's LLM cap     429  (exit 10)

The outside systems' errors are integrations.errors' tree (IntegrationError and below): they know
no status or exit code, so `describe` gives them theirs (INTEGRATION_ERRORS). Driver and SDK errors
are wrapped `from exc` so their message reaches logs but never a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.errors import AuthRevoked, CircuitOpen, IntegrationError, InvalidRequest, NotConfigured
from integrations.untrusted import storable, storable_text


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


# What callers treat as an expected failure (an answer to give, a run to record as failed), as
# opposed to a bug.
KNOWN_ERRORS: tuple[type[OpsdeskError], type[IntegrationError]] = (OpsdeskError, IntegrationError)

# An integration error's HTTP status and exit code: the first class it is an instance of decides.
INTEGRATION_ERRORS: tuple[tuple[type[IntegrationError], int, int], ...] = (
    (NotConfigured, ConfigError.status_code, ConfigError.exit_code),
    (InvalidRequest, InvalidInput.status_code, InvalidInput.exit_code),
    (CircuitOpen, 503, 9),
    # an outside system no longer takes our credentials (Buffer's grant): exit 5, like any refused key
    (AuthRevoked, 502, 5),
    (IntegrationError, 502, 9),
)


@dataclass(frozen=True)
class ErrorInfo:
    status_code: int
    code: str
    exit_code: int
    message: str
    details: dict[str, Any]


def describe(exc: OpsdeskError | IntegrationError) -> ErrorInfo:
    """The one place an error gets its HTTP status, code and CLI exit code."""
    if isinstance(exc, OpsdeskError):
        return ErrorInfo(exc.status_code, exc.code, exc.exit_code, exc.message, exc.details)
    status, exit_code = next((status, code) for kind, status, code in INTEGRATION_ERRORS if isinstance(exc, kind))
    return ErrorInfo(status, exc.code, exit_code, exc.message, exc.details)
