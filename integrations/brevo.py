"""Brevo (ex-Sendinblue) transactional email through `sib-api-v3-sdk` 7.6.0: the one module that
builds the SDK client, when the first `BrevoClient` is made (its messages, addresses and errors load
without the SDK). Everything else sends through `BrevoClient.send`.

What the SDK leaves to us (checked against the installed 7.6.0):
- its default host is api.sendinblue.com: the host is always set (BREVO_BASE_URL, default api.brevo.com/v3);
- `_request_timeout` only counts as an int or a (connect, read) tuple: a float is silently ignored
  and the request may wait forever, so we pass a tuple;
- urllib3 underneath retries failed connections three times on its own: switched off, so retries
  follow our policy (`integrations.resilience`) and nothing retries behind our back;
- Brevo sends no Retry-After: a 429 says when its window resets in `x-sib-ratelimit-reset` (seconds);
- 402 `not_enough_credits` means the account's sending quota is spent: never retried.
Every request carries an `idempotencyKey` (a UUID) inside the email's `headers`: Brevo processes a
key once within 30 minutes, so our retries of one request cannot send it twice.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import urllib3
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr

from integrations.errors import IntegrationError, PermanentError, RateLimited, TransientError
from integrations.resilience import CircuitBreaker, call_with_retries, parse_retry_after

if TYPE_CHECKING:
    import sib_api_v3_sdk
    from sib_api_v3_sdk.rest import ApiException

SYSTEM = "brevo"
DEFAULT_BASE_URL = "https://api.brevo.com/v3"
# Brevo's batch limits: 1000 message versions and 2000 recipients per request. We put one recipient
# in each version (recipients of one version see each other in To:), so versions are the limit.
MAX_VERSIONS_PER_REQUEST = 1000
# The error body has only `code` and `message` (sib's ErrorModel). A bad recipient reads e.g.
# {"code": "invalid_parameter", "message": "email is not valid in to"}.
_RECIPIENT_FAULT = re.compile(r"\bemail is not valid in (to|cc|bcc|messageversions)\b|\binvalid email address\b")


class BrevoRefused(PermanentError):
    """Brevo refused the request itself (4xx): sending the same request again cannot help."""

    code = "brevo_refused"

    def __init__(self, message: str, *, status: int, brevo_code: str | None, brevo_message: str = "") -> None:
        super().__init__(message, system=SYSTEM, details={"status": status, "brevo_code": brevo_code})
        self.status = status
        self.brevo_code = brevo_code
        self.brevo_message = brevo_message

    def blames_recipient(self, emails: Sequence[str]) -> bool:
        """A 400 `invalid_parameter` whose message is about a recipient's address (or quotes one of
        `emails`): splitting the request finds the address. Anything else (a template parameter, the
        subject, the sender) is the whole request's fault, and no recipient's."""
        if self.status != 400 or self.brevo_code != "invalid_parameter":
            return False
        text = self.brevo_message.lower()
        return bool(_RECIPIENT_FAULT.search(text)) or any(email.lower() in text for email in emails)


class CreditsExhausted(BrevoRefused):
    """402 `not_enough_credits`: the account can send nothing more until its quota resets."""

    code = "brevo_credits_exhausted"


class OutcomeUncertain(TransientError):
    """Retries ran out after an attempt that may have reached Brevo (a 5xx, or the connection lost
    after the request went out). The same idempotencyKey stays safe for 30 minutes only."""

    code = "brevo_outcome_uncertain"


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    name: str | None = None

    def api(self) -> dict[str, str]:
        return {"email": self.email, **({"name": self.name} if self.name else {})}


class Message(BaseModel):
    """One request: either one recipient (`to`) or one message version per recipient (`versions`,
    each with `params.name` for `{{params.name}}` in the content)."""

    model_config = ConfigDict(extra="forbid")

    subject: str
    html: str
    text: str | None = None
    to: Address | None = None
    versions: list[Address] = Field(default_factory=list, max_length=MAX_VERSIONS_PER_REQUEST)
    tags: list[str] = Field(default_factory=list)


class BrevoConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    sender: Address  # a sender verified in Brevo
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = Field(15.0, gt=0)
    attempts: PositiveInt = 3


class BrevoClient:
    def __init__(
        self,
        config: BrevoConfig,
        *,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import sib_api_v3_sdk  # ~0.4 s: loaded with the first client, not with the messages' types

        sdk_config = sib_api_v3_sdk.Configuration()
        sdk_config.host = config.base_url.rstrip("/")
        sdk_config.api_key["api-key"] = config.api_key.get_secret_value()
        api_client = sib_api_v3_sdk.ApiClient(sdk_config)
        # urllib3's own retries off (retries=False makes it raise the first error as is)
        api_client.rest_client.pool_manager.connection_pool_kw["retries"] = False
        self._sdk = sib_api_v3_sdk
        self._api = sib_api_v3_sdk.TransactionalEmailsApi(api_client)
        self._pool = api_client.rest_client.pool_manager
        self.config = config
        self.sender = config.sender
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        self._sleep = sleep

    def send(self, message: Message, *, idempotency_key: str) -> list[str]:
        """Send one request; returns Brevo's message ids (one per version, or one)."""
        if (message.to is None) == (not message.versions):
            raise ValueError("a message has either one recipient or message versions")
        email = self._sdk.SendSmtpEmail(
            sender=self.sender.api(),
            to=[message.to.api()] if message.to else None,
            subject=message.subject,
            html_content=message.html,
            text_content=message.text,
            headers={"idempotencyKey": idempotency_key},
            tags=message.tags or None,
            # plain dicts with the API's camelCase keys: the SDK passes them through unchanged
            message_versions=[
                {"to": [version.api()], "params": {"name": version.name or ""}} for version in message.versions
            ]
            or None,
        )
        reached = False

        def attempt() -> list[str]:
            nonlocal reached
            try:
                return self._send_once(email)
            except TransientError as exc:
                reached = reached or bool(exc.details.get("reached"))
                raise

        try:
            return call_with_retries(attempt, breaker=self.breaker, attempts=self.config.attempts, sleep=self._sleep)
        except IntegrationError as exc:
            # whatever a later attempt met (a 429, a 402, a refusal), an earlier one may have sent it
            if reached and not isinstance(exc, OutcomeUncertain):
                attempts = self.config.attempts
                raise OutcomeUncertain(
                    f"no clear answer after {attempts} attempts, and one may have been sent ({exc.message})",
                    system=SYSTEM,
                    retry_after=exc.retry_after,
                    details={"reached": True},
                ) from exc
            raise

    def _send_once(self, email: sib_api_v3_sdk.SendSmtpEmail) -> list[str]:
        timeout = self.config.timeout_seconds
        try:
            result = self._api.send_transac_email(email, _request_timeout=(timeout, timeout))
        except self._sdk.rest.ApiException as exc:
            raise _api_error(exc) from exc
        except urllib3.exceptions.ConnectTimeoutError as exc:  # NewConnectionError too: nothing went out
            raise TransientError(
                f"connection failed ({type(exc).__name__})", system=SYSTEM, details={"reached": False}
            ) from exc
        except urllib3.exceptions.HTTPError as exc:  # read timeout, connection dropped: it went out
            raise TransientError(f"no answer ({type(exc).__name__})", system=SYSTEM, details={"reached": True}) from exc
        if result.message_ids:
            return list(result.message_ids)
        return [result.message_id] if result.message_id else []

    def close(self) -> None:
        self._pool.clear()


def _api_error(exc: ApiException) -> IntegrationError:
    status = int(exc.status or 0)
    brevo_code, text = _error_body(exc.body)
    if status == 0:  # the SDK's wrapper for TLS failures: the request never left
        return TransientError(f"connection failed ({exc.reason})", system=SYSTEM, details={"reached": False})
    if status == 429:
        reset = parse_retry_after(exc.headers.get("x-sib-ratelimit-reset") if exc.headers else None)
        return RateLimited("429 Too Many Requests", system=SYSTEM, retry_after=reset or 1.0, details={"reached": False})
    if status >= 500:
        return TransientError(f"HTTP {status}: {text}", system=SYSTEM, details={"reached": True})
    if status == 402 or brevo_code == "not_enough_credits":
        return CreditsExhausted(
            f"HTTP {status} {brevo_code}: {text}", status=status, brevo_code=brevo_code, brevo_message=text
        )
    return BrevoRefused(f"HTTP {status} {brevo_code}: {text}", status=status, brevo_code=brevo_code, brevo_message=text)


def _error_body(body: Any) -> tuple[str | None, str]:
    """Brevo's error body is `{"code": ..., "message": ...}`; anything else is shown shortened."""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None, raw[:300]
    if not isinstance(parsed, dict):
        return None, raw[:300]
    code = parsed.get("code")
    return (str(code) if code is not None else None), str(parsed.get("message", raw))[:300]
