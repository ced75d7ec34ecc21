"""The centralized Claude client.

An agent asks `ClaudeClient.structured(agent, system, messages, OutputModel)` and gets a validated
pydantic instance. Around every model request:

- the model id is the configured one resolved against the models list (newest Sonnet when the
  configured one is gone), kept in the `ModelCache` the app hands in, so every process uses the
  same one;
- the request's worst-case cost is reserved in the `SpendLedger` the app hands in (which refuses
  a request that could pass its cap), then settled with the real usage and cost: every request
  is recorded, failed ones too;
- 429/5xx/529/timeouts/connection errors follow `integrations.resilience` (our backoff,
  Retry-After, the breaker); the SDK itself is built and read in `claude_sdk`, loaded with the
  first client;
- the long, stable system prompt carries `cache_control`, so repeated drafts read it from the cache;
- structured output goes through `output_config.format` (current models refuse forced tool choice),
  and an answer that does not fit the schema gets one repair request, then `ModelOutputInvalid`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr, ValidationError

from integrations.claude_prices import (
    DEFAULT_PRICES,
    CacheTtl,
    ModelPrice,
    TokenUsage,
    cost_usd,
    most_expensive,
    price_for,
    worst_case_usd,
)
from integrations.errors import IntegrationError, InvalidRequest, ModelOutputInvalid
from integrations.resilience import CircuitBreaker, call_with_retries
from integrations.untrusted import storable, storable_text, validation_errors

if TYPE_CHECKING:
    from anthropic.types import ModelInfo

    from integrations.claude_sdk import AnthropicApi

SYSTEM = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-sonnet-5-5"
# English runs about 4 characters a token; 3 over-estimates on purpose, so the reservation made
# before a call is never smaller than what the call can cost.
_CHARS_PER_TOKEN = 3
_MAX_ERRORS_SHOWN = 20

log = logging.getLogger(__name__)
OutputT = TypeVar("OutputT", bound=BaseModel)
R = TypeVar("R")
CallOutcome = Literal["ok", "error", "invalid_output"]


class ClaudeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    model: str = DEFAULT_MODEL
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = Field(120.0, gt=0)  # one request; long answers take a while
    max_attempts: PositiveInt = 3
    model_cache_hours: float = Field(24, gt=0)  # how long a models-list check is trusted
    prompt_cache_ttl: CacheTtl = "5m"
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))


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


class SpendLedger(Protocol):
    """Counts every model request against a budget, where every process sees it."""

    def reserve(self, *, agent: str, model: str, worst_case_usd: Decimal) -> int:
        """Hold the request's worst-case cost and return the call's id. Raising refuses the
        request: nothing is sent, and the error reaches the caller as it is."""
        ...

    def settle(
        self,
        call_id: int,
        *,
        outcome: CallOutcome,
        usage: TokenUsage,
        cost_usd: Decimal,
        latency_ms: int,
        error: str | None,
    ) -> None:
        """Record what the request really used; its reservation stops counting."""
        ...


class ModelCache(Protocol):
    """Where the resolution of the configured model against the models list is shared."""

    def get(self, configured: str, *, max_age_seconds: float) -> ModelResolution | None:
        """The stored resolution of `configured` if it was checked within `max_age_seconds`."""
        ...

    def put(self, configured: str, *, resolved: str, fallback: bool, reason: str) -> ModelResolution:
        """Store a new check's result (stamped with when it was checked) and return it."""
        ...


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
        config: ClaudeConfig,
        *,
        ledger: SpendLedger,
        model_cache: ModelCache,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from integrations.claude_sdk import AnthropicApi  # ~1 s: loaded with the first client, not the config

        self.config = config
        self.ledger = ledger
        self.model_cache = model_cache
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        # the models list has its own breaker: its failures must not stop model calls, and once it
        # opens a failing list is not asked again on every call
        self._models_breaker = CircuitBreaker(f"{SYSTEM} models list")
        self._sleep = sleep
        self._api: AnthropicApi = AnthropicApi(
            api_key=config.api_key.get_secret_value(), base_url=config.base_url, timeout_seconds=config.timeout_seconds
        )

    def close(self) -> None:
        self._api.close()

    # --- the model ------------------------------------------------------------------------------
    def resolve_model(self, *, refresh: bool = False) -> ModelResolution:
        """The model to call: the stored resolution while it is fresh, else a new check of the
        models list (stored for every process). A list that cannot be read keeps the configured
        id and stores nothing, so the next call checks again."""
        configured = self.config.model
        if not refresh:
            cached = self.model_cache.get(configured, max_age_seconds=self.config.model_cache_hours * 3600)
            if cached is not None:
                return cached
        try:
            # one try: the configured id is a safe answer, not worth waiting for
            models = self._with_retries(self._api.models, breaker=self._models_breaker, attempts=1)
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
        return self.model_cache.put(configured, resolved=resolved, fallback=fallback, reason=reason)

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
        `ModelOutputInvalid`. The ledger refuses (raises) before a request that could pass its cap.
        `call_ids` collects the ledger's id of every request made, failed ones too, so a caller
        (an agent run) can total exactly its own tokens and cost."""
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
                    "cache_control": {"type": "ephemeral", "ttl": self.config.prompt_cache_ttl},
                }
            ],
            "output_config": {"format": {"type": "json_schema", "schema": self._api.json_schema(output)}},
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
        ttl = self.config.prompt_cache_ttl
        price = self._price(model)
        estimate = math.ceil(len(json.dumps([body["system"], body["output_config"], turns])) / _CHARS_PER_TOKEN)
        call_id = self.ledger.reserve(
            agent=agent,
            model=model,
            worst_case_usd=worst_case_usd(price, input_tokens=estimate, max_tokens=body["max_tokens"], ttl=ttl),
        )
        if call_ids is not None:
            call_ids.append(call_id)
        started = time.monotonic()
        try:
            answer = self._with_retries(lambda: self._api.create(body, turns))
        except Exception as exc:
            self._settle(call_id, "error", TokenUsage(), Decimal(0), started, error=str(exc))
            raise
        cost = cost_usd(price, answer.usage, requested_ttl=ttl)
        try:
            result = _parsed(answer.text, output)
        except ValidationError as exc:
            self._settle(call_id, "invalid_output", answer.usage, cost, started, error=str(exc))
            raise _SchemaMiss(answer.text, exc, answer.stop_reason) from exc
        self._settle(call_id, "ok", answer.usage, cost, started)
        return result

    def _price(self, model: str) -> ModelPrice:
        price = price_for(self.config.prices, model)
        if price is None:
            log.warning("no price for Claude model %s (LLM_PRICES_JSON): charging the dearest listed", model)
            return most_expensive(self.config.prices)
        return price

    def _settle(
        self,
        call_id: int,
        outcome: CallOutcome,
        usage: TokenUsage,
        cost: Decimal,
        started: float,
        *,
        error: str | None = None,
    ) -> None:
        self.ledger.settle(
            call_id,
            outcome=outcome,
            usage=usage,
            cost_usd=cost,
            latency_ms=round((time.monotonic() - started) * 1000),
            error=storable_text(error)[:1000] if error else None,
        )

    def _with_retries(
        self, request: Callable[[], R], *, breaker: CircuitBreaker | None = None, attempts: int | None = None
    ) -> R:
        return call_with_retries(
            request,
            breaker=breaker or self.breaker,
            attempts=attempts or self.config.max_attempts,
            sleep=self._sleep,
        )
