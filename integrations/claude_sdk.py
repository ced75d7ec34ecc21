"""The anthropic SDK, built and read in one place: the only module that builds an
`anthropic.Anthropic`. `ClaudeClient` imports it when it is made (the SDK takes about a second to
import), so its config and types load without it.

- The key is passed explicitly, so the SDK never falls back to credential profiles on disk.
- The SDK's own retries are off (`max_retries=0`): 429/5xx/529/timeouts/connection errors become
  our errors here and follow `integrations.resilience` (our backoff, Retry-After, the breaker).
- An answer's text blocks are read by type: thinking blocks come first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anthropic
from anthropic.types import MessageParam, ModelInfo, Usage
from pydantic import BaseModel

from integrations.claude_prices import TokenUsage
from integrations.errors import IntegrationError, PermanentError, RateLimited, TransientError
from integrations.resilience import parse_retry_after

SYSTEM = "anthropic"
R = TypeVar("R")


@dataclass(frozen=True)
class Answer:
    text: str  # the text blocks, joined
    usage: TokenUsage
    stop_reason: str | None


class AnthropicApi:
    """The Messages and Models APIs, raising our errors."""

    def __init__(self, *, api_key: str, base_url: str, timeout_seconds: float) -> None:
        self._client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=0,  # integrations.resilience retries, with the breaker and our backoff
        )

    def models(self) -> list[ModelInfo]:
        return _mapped(lambda: list(self._client.models.list(limit=100)))

    def create(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> Answer:
        turns = cast("list[MessageParam]", messages)  # built as Messages API turns by ClaudeClient
        message = _mapped(lambda: self._client.messages.create(**body, messages=turns))
        text = "".join(block.text for block in message.content if block.type == "text")
        return Answer(text=text, usage=_usage(message.usage), stop_reason=message.stop_reason)

    @staticmethod
    def json_schema(output: type[BaseModel]) -> dict[str, Any]:
        """`output`'s JSON schema as structured output accepts it."""
        return anthropic.transform_schema(output)

    def close(self) -> None:
        self._client.close()


def _mapped(request: Callable[[], R]) -> R:
    try:
        return request()
    except anthropic.APIError as exc:
        raise as_integration_error(exc) from exc


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
