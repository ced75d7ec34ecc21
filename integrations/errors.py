"""Every exception an integration raises, in one tree.

    IntegrationError                an outside system failed, or was asked what it cannot do
    ├── InvalidRequest              what was asked cannot be sent as asked (past Discord's limits,
    │                               a conversation not ending with the user), or what came in is not
    │                               the vendor's shape (a HubSpot webhook body)
    ├── TransientError              5xx, a timeout, a failed connection: worth another try
    │   ├── RateLimited             429 or a full shared window: wait `retry_after`, no attempt spent
    │   ├── CircuitOpen             the breaker of this system is open after repeated failures
    │   └── brevo.OutcomeUncertain  retries ran out after a try that may have reached Brevo
    ├── PermanentError              refused, and another try cannot help
    │   ├── NotConfigured           a setting the client needs is missing or unusable: raised
    │   │                           before any call (no key, a legacy HubSpot key, no local model)
    │   ├── AuthRevoked             the system no longer takes our credentials (401, a revoked
    │   │   │                       grant): a person must reconnect or replace them
    │   │   └── buffer_oauth.ReconnectNeeded   Buffer's grant or key is dead: `opsdesk buffer connect`
    │   ├── brevo.BrevoRefused      Brevo refused the request itself (4xx)
    │   │   └── brevo.CreditsExhausted   402: the account sends nothing more today
    │   ├── plausible.AuthRefused   401/403: the Stats API key is missing, revoked or not the site's
    │   └── plausible.PlanRefused   402: the plan lacks the Stats API, or the site is locked
    ├── OutcomeUnknown              it may or may not have taken effect: a person settles it
    └── ModelOutputInvalid          Claude's answer did not fit the schema, even after one repair

Each carries the `system` it is about, a `message` reading "<system>: <what happened>", `details`
(JSON-like), `retry_after` (seconds the system asked for, if any), `retryable` and a
machine-readable `code`. Nothing here knows HTTP statuses or exit codes: the app gives every error
both in one place (`app.core.errors.describe`). SDK and driver errors are wrapped `from exc`, so their
text reaches logs, never a secret.
"""

from __future__ import annotations

from typing import Any

from integrations.untrusted import storable, storable_text

__all__ = [
    "AuthRevoked",
    "CircuitOpen",
    "IntegrationError",
    "InvalidRequest",
    "ModelOutputInvalid",
    "NotConfigured",
    "OutcomeUnknown",
    "PermanentError",
    "RateLimited",
    "TransientError",
]


class IntegrationError(Exception):
    """An outside system failed. `retryable` says whether trying again can help."""

    code = "integration_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        system: str,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        # messages and details carry an outside system's words and end up in the database (an
        # action's last error, a run's error): made storable here, once for every error
        message = f"{system}: {storable_text(message)}"
        super().__init__(message)
        self.message = message
        self.system = system
        self.retry_after = retry_after
        self.details: dict[str, Any] = storable(details) if details else {}


class InvalidRequest(IntegrationError):
    """The request cannot be sent as asked, or what came in is not the system's shape."""

    code = "invalid_input"


class TransientError(IntegrationError):
    """5xx, timeouts, connection errors: worth another try with backoff."""

    retryable = True


class RateLimited(TransientError):
    """429: wait for Retry-After; waiting does not use up an attempt."""

    code = "rate_limited"


class CircuitOpen(TransientError):
    """The breaker for this system is open after repeated failures."""

    code = "circuit_open"


class PermanentError(IntegrationError):
    """The outside system refused the request itself (4xx): trying again cannot help."""


class NotConfigured(PermanentError):
    """A setting the client needs is missing or unusable; nothing was sent."""

    code = "config_error"


class AuthRevoked(PermanentError):
    """The system refused or revoked our credentials: nothing works until a person reconnects."""

    code = "auth_revoked"


class OutcomeUnknown(IntegrationError):
    """The call may or may not have taken effect; a person must settle it."""

    code = "outcome_unknown"


class ModelOutputInvalid(IntegrationError):
    """Claude's answer did not fit the schema, even after one repair request: a failed draft."""

    code = "model_output_invalid"
