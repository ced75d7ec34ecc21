"""The centralized Claude client: the only module that builds an `anthropic.Anthropic`.

An agent asks `ClaudeClient.structured(agent, system, messages, OutputModel)` and gets a validated
pydantic instance. Around every model request:

- the model id is `ANTHROPIC_MODEL` resolved against the models list (newest Sonnet when the
  configured one is gone), cached in the database so every process uses the same one;
- the request's worst-case cost is reserved against today's cap (`LLM_DAILY_BUDGET_USD`) in one
  SQL function, then settled with the real usage and cost: every request leaves a row in
  `llm_calls`, refused ones too;
- the SDK's own retries are off (`max_retries=0`): 429/5xx/529/timeouts/connection errors follow
  `integrations.resilience` (our backoff, Retry-After, the breaker);
- the long, stable system prompt carries `cache_control`, so repeated drafts read it from the cache;
- structured output goes through `output_config.format` (current models refuse forced tool choice),
  the answer's text blocks are read by type (thinking blocks come first), and an answer that does
  not fit the schema gets one repair request, then `ModelOutputInvalid`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import anthropic
from anthropic.types import ModelInfo, Usage
from pydantic import BaseModel, ConfigDict, ValidationError

from app.database import Database
from app.errors import KNOWN_ERRORS, BudgetExceeded
from app.settings import Settings
from integrations.claude_prices import ModelPrice, TokenUsage, cost_usd, most_expensive, price_for, worst_case_usd
from integrations.errors import (
    IntegrationError,
    InvalidRequest,
    ModelOutputInvalid,
    NotConfigured,
    PermanentError,
    RateLimited,
    TransientError,
)
from integrations.resilience import CircuitBreaker, call_with_retries, parse_retry_after
from integrations.untrusted import storable, storable_text, validation_errors

SYSTEM = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
# English runs about 4 characters a token; 3 over-estimates on purpose, so the reservation made
# before a call is never smaller than what the call can cost.
_CHARS_PER_TOKEN = 3
_MAX_ERRORS_SHOWN = 20

log = logging.getLogger(__name__)
OutputT = TypeVar("OutputT", bound=BaseModel)
R = TypeVar("R")


class Turn(BaseModel):
    """One message of the conversation an agent sends."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class ModelResolution(BaseModel):
    configured: str
    resolved: str
    fallback: bool
    reason: str
    checked_at: datetime | None = None  # None: not checked (the list could not be read)


class LlmSpend(BaseModel):
    day: date
    spent_usd: Decimal
    calls: int
    refused: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    by_agent: dict[str, Decimal]


def build_anthropic(settings: Settings) -> anthropic.Anthropic:
    """The one place an Anthropic client is built. The key is passed explicitly, so the SDK never
    falls back to credential profiles on disk."""
    if settings.anthropic_api_key is None:
        raise NotConfigured("ANTHROPIC_API_KEY is not set", system=SYSTEM)
    return anthropic.Anthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url or DEFAULT_BASE_URL,
        timeout=settings.anthropic_timeout_seconds,
        max_retries=0,  # integrations.resilience retries, with the breaker and our backoff
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def as_integration_error(exc: anthropic.APIError) -> IntegrationError:
    """The SDK's errors as ours: what may succeed on another try, and what cannot."""
    if isinstance(exc, anthropic.APITimeoutError):
        return TransientError("timed out", system=SYSTEM)
    if isinstance(exc, anthropic.APIConnectionError):
        return TransientError(f"connection failed ({exc.message})", system=SYSTEM)
    if not isinstance(exc, anthropic.APIStatusError):
        return PermanentError(f"unexpected answer: {exc.message}", system=SYSTEM)
    status = exc.status_code
    headers = exc.response.headers
    message = f"HTTP {status} {exc.type or ''}: {exc.api_message or exc.message}"[:300]
    if status == 429:
        return RateLimited(message, system=SYSTEM, retry_after=_retry_after(headers))
    should_retry = headers.get("x-should-retry")
    if should_retry == "false":
        return PermanentError(message, system=SYSTEM)
    if should_retry == "true" or status in (408, 409) or status >= 500:  # 529: overloaded
        return TransientError(message, system=SYSTEM, retry_after=_retry_after(headers))
    return PermanentError(message, system=SYSTEM)


def choose_model(configured: str, models: Sequence[ModelInfo]) -> tuple[str, bool, str]:
    """(model id, fell back?, why). Keeps the configured id while the list offers it (itself, or a
    dated snapshot of it when it is an alias) and it is not retired; else the newest active Sonnet."""
    usable = [m for m in models if m.lifecycle != "retired"]
    for model in usable:
        if model.id == configured or (model.id.startswith(f"{configured}-") and model.id[-8:].isdigit()):
            if model.lifecycle == "deprecated":
                return configured, False, f"listed but deprecated (retires {model.retires_at or 'soon'})"
            return configured, False, "listed"
    sonnets = [m for m in usable if m.id.startswith("claude-sonnet") and m.lifecycle == "active"]
    if not sonnets:
        return configured, False, "not in the models list, and no active Sonnet is; keeping it"
    newest = max(sonnets, key=lambda m: m.created_at)
    return newest.id, True, f"{configured} is not in the models list; newest Sonnet is {newest.id}"


def _usage(usage: Usage) -> TokenUsage:
    split = usage.cache_creation
    return TokenUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        cache_creation_5m_tokens=split.ephemeral_5m_input_tokens if split else None,
        cache_creation_1h_tokens=split.ephemeral_1h_input_tokens if split else None,
    )


def _parsed(text: str, output: type[OutputT]) -> OutputT:
    """The answer as `output`. The model's words are untrusted text like any other (it may echo a
    NUL or half a surrogate pair from a ticket): made storable before they are validated."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return output.model_validate_json(text)  # raises the ValidationError that says why
    return output.model_validate(storable(data))


class _SchemaMiss(Exception):
    """An answer that did not validate (internal: becomes a repair request or ModelOutputInvalid)."""

    def __init__(self, text: str, error: ValidationError, stop_reason: str | None) -> None:
        super().__init__(str(error))
        self.text = text
        self.error = error
        self.stop_reason = stop_reason


def _repair_prompt(miss: _SchemaMiss) -> str:
    errors = [
        f"{'.'.join(str(part) for part in e['loc']) or '(root)'}: {e['msg']}"
        for e in miss.error.errors(include_url=False, include_input=False)[:_MAX_ERRORS_SHOWN]
    ]
    cut = " It was cut off at the token limit: answer more briefly." if miss.stop_reason == "max_tokens" else ""
    return (
        "Your previous answer does not fit the required JSON schema:\n- "
        + "\n- ".join(errors)
        + f"\n{cut}\nAnswer again with only the JSON object, fitting the schema exactly."
    )


class ClaudeClient:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.db = db
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        # the models list has its own breaker: its failures must not stop model calls, and once it
        # opens a failing list is not asked again on every call
        self._models_breaker = CircuitBreaker(f"{SYSTEM} models list")
        self._sleep = sleep
        self._client = build_anthropic(settings)

    def close(self) -> None:
        self._client.close()

    # --- the model ------------------------------------------------------------------------------
    def resolve_model(self, *, refresh: bool = False) -> ModelResolution:
        """The model to call: the stored resolution while it is fresh, else a new check of the
        models list (stored for every process). A list that cannot be read keeps the configured
        id and stores nothing, so the next call checks again."""
        configured = self.settings.anthropic_model
        if not refresh:
            cached = self.db.call(
                "llm_model_cached",
                configured=configured,
                max_age_seconds=self.settings.anthropic_model_cache_hours * 3600,
            )
            if cached is not None:
                return ModelResolution.model_validate(cached)
        try:
            # one try: the configured id is a safe answer, not worth waiting for
            models = self._with_retries(
                lambda: list(self._client.models.list(limit=100)), breaker=self._models_breaker, attempts=1
            )
        except IntegrationError as exc:
            log.warning("cannot read the Claude models list (%s); keeping %s", exc, configured)
            return ModelResolution(
                configured=configured,
                resolved=configured,
                fallback=False,
                reason=f"models list unavailable ({exc}); keeping the configured id",
            )
        resolved, fallback, reason = choose_model(configured, models)
        if fallback:
            log.warning("Claude model %s is gone: using %s instead (%s)", configured, resolved, reason)
        row = self.db.call(
            "llm_model_store", configured=configured, resolved=resolved, fallback=fallback, reason=reason
        )
        return ModelResolution.model_validate(row)

    # --- a structured call ----------------------------------------------------------------------
    def structured(
        self,
        agent: str,
        system: str,
        messages: Sequence[Mapping[str, Any]],
        output: type[OutputT],
        *,
        max_tokens: int = 4096,
        call_ids: list[int] | None = None,
    ) -> OutputT:
        """Ask for an answer that fits `output`; one repair request when it does not, then
        `ModelOutputInvalid`. Raises `BudgetExceeded` before a request that could pass the cap.
        `call_ids` collects the `llm_calls` row of every request made, failed ones too, so a
        caller (an agent run) can total exactly its own tokens and cost."""
        try:
            turns = [Turn.model_validate(message).model_dump() for message in messages]
        except ValidationError as exc:
            raise InvalidRequest(
                "messages must be {role: user|assistant, content}",
                system=SYSTEM,
                details={"errors": validation_errors(exc)},
            ) from exc
        if not turns or turns[-1]["role"] != "user":
            # current models refuse an assistant prefill (FACTS.md 5.3)
            raise InvalidRequest("the conversation must end with a user message", system=SYSTEM)
        model = self.resolve_model().resolved
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "system": [
                {
                    "type": "text",
                    "text": system,
                    "cache_control": {"type": "ephemeral", "ttl": self.settings.anthropic_prompt_cache_ttl},
                }
            ],
            "output_config": {"format": {"type": "json_schema", "schema": anthropic.transform_schema(output)}},
        }
        try:
            return self._request(agent, body, turns, output, call_ids)
        except _SchemaMiss as miss:
            if miss.stop_reason == "refusal":
                raise ModelOutputInvalid(f"{output.__name__}: the model refused to answer", system=SYSTEM) from None
            first = miss
        repair = [
            *turns,
            *([{"role": "assistant", "content": first.text}] if first.text.strip() else []),
            {"role": "user", "content": _repair_prompt(first)},
        ]
        try:
            return self._request(agent, body, repair, output, call_ids)
        except _SchemaMiss as miss:
            raise ModelOutputInvalid(
                f"{output.__name__}: the answer did not fit the schema, even after a repair request",
                system=SYSTEM,
                details={
                    "errors": miss.error.errors(include_url=False, include_input=False, include_context=False)[
                        :_MAX_ERRORS_SHOWN
                    ]
                },
            ) from None

    def _request(
        self,
        agent: str,
        body: dict[str, Any],
        turns: list[dict[str, Any]],
        output: type[OutputT],
        call_ids: list[int] | None,
    ) -> OutputT:
        """One model request: reserve its worst case, call, settle with what it really cost."""
        model = body["model"]
        ttl = self.settings.anthropic_prompt_cache_ttl
        price = self._price(model)
        estimate = math.ceil(len(json.dumps([body["system"], body["output_config"], turns])) / _CHARS_PER_TOKEN)
        call_id = self._reserve(
            agent, model, worst_case_usd(price, input_tokens=estimate, max_tokens=body["max_tokens"], ttl=ttl)
        )
        if call_ids is not None:
            call_ids.append(call_id)
        started = time.monotonic()
        try:
            message = self._with_retries(lambda: self._client.messages.create(**body, messages=turns))
        except Exception as exc:
            self._settle(call_id, "error", None, Decimal(0), started, error=str(exc))
            raise
        usage = _usage(message.usage)
        cost = cost_usd(price, usage, requested_ttl=ttl)
        text = "".join(block.text for block in message.content if block.type == "text")
        try:
            result = _parsed(text, output)
        except ValidationError as exc:
            self._settle(call_id, "invalid_output", usage, cost, started, error=str(exc))
            raise _SchemaMiss(text, exc, message.stop_reason) from exc
        self._settle(call_id, "ok", usage, cost, started)
        return result

    def _price(self, model: str) -> ModelPrice:
        price = price_for(self.settings.llm_prices, model)
        if price is None:
            log.warning("no price for Claude model %s (LLM_PRICES_JSON): charging the dearest listed", model)
            return most_expensive(self.settings.llm_prices)
        return price

    def _reserve(self, agent: str, model: str, worst_case: Decimal) -> int:
        row = self.db.call(
            "llm_reserve",
            agent=agent,
            model=model,
            reserve_usd=worst_case,
            budget_usd=self.settings.llm_daily_budget_usd,
            time_zone=self.settings.cron_timezone,
        )
        if not row["granted"]:
            raise BudgetExceeded(
                f"the call could pass today's LLM budget of ${row['budget_usd']}: "
                f"${Decimal(row['spent_usd']):.2f} spent, this call may cost up to ${Decimal(row['needed_usd']):.4f}",
                retry_after=float(row["resets_in_seconds"]),
                details={key: row[key] for key in ("day", "spent_usd", "budget_usd", "needed_usd")},
            )
        return int(row["call_id"])

    def _settle(
        self,
        call_id: int,
        outcome: str,
        usage: TokenUsage | None,
        cost: Decimal,
        started: float,
        *,
        error: str | None = None,
    ) -> None:
        tokens = usage or TokenUsage()
        self.db.call(
            "llm_settle",
            call_id=call_id,
            outcome=outcome,
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            cache_creation_input_tokens=tokens.cache_creation_input_tokens,
            cache_read_input_tokens=tokens.cache_read_input_tokens,
            cost_usd=cost,
            latency_ms=round((time.monotonic() - started) * 1000),
            error=storable_text(error)[:1000] if error else None,
        )

    def _with_retries(
        self, request: Callable[[], R], *, breaker: CircuitBreaker | None = None, attempts: int | None = None
    ) -> R:
        def once() -> R:
            try:
                return request()
            except anthropic.APIError as exc:
                raise as_integration_error(exc) from exc

        return call_with_retries(
            once,
            breaker=breaker or self.breaker,
            attempts=attempts or self.settings.anthropic_max_attempts,
            sleep=self._sleep,
        )


def llm_spend(db: Database, settings: Settings, day: date | None = None) -> LlmSpend:
    """A budget day's LLM spend (today in CRON_TIMEZONE by default)."""
    return LlmSpend.model_validate(db.call("llm_spend", time_zone=settings.cron_timezone, day=day))


def check_model_at_startup(settings: Settings, db: Database) -> ModelResolution | None:
    """Start-up's look at the models list (nothing to do without a key). Never stops the start."""
    if settings.anthropic_api_key is None:
        return None
    client = ClaudeClient(settings, db)
    try:
        resolution = client.resolve_model()
    except KNOWN_ERRORS as exc:
        log.warning("Claude model check at start-up failed: %s", exc)
        return None
    finally:
        client.close()
    log.info(
        "Claude model: configured %s, using %s (%s)", resolution.configured, resolution.resolved, resolution.reason
    )
    return resolution
