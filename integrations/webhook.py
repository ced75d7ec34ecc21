"""Outgoing JSON webhooks (the built-in `webhook.post` action): one POST per action, carrying an
idempotency key derived from the action so the receiver can drop a repeat."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from integrations.errors import PermanentError, RateLimited, TransientError
from integrations.resilience import CircuitBreaker, call_with_retries, parse_retry_after

SYSTEM = "webhook"


class WebhookConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    timeout_seconds: float = Field(10.0, gt=0)


class WebhookClient:
    def __init__(
        self,
        config: WebhookConfig,
        *,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = config.url
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        self._sleep = sleep
        self._http = httpx.Client(timeout=config.timeout_seconds, transport=transport, follow_redirects=False)

    def post_json(self, body: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return call_with_retries(
            lambda: self._post_once(body, idempotency_key), breaker=self.breaker, sleep=self._sleep
        )

    def _post_once(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        try:
            response = self._http.post(
                self.url,
                json=body,
                headers={"Idempotency-Key": idempotency_key, "User-Agent": "opsdesk"},
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out ({type(exc).__name__})", system=SYSTEM) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__})", system=SYSTEM) from exc
        status = response.status_code
        if status == 429:
            raise RateLimited(
                "429 Too Many Requests",
                system=SYSTEM,
                retry_after=parse_retry_after(response.headers.get("Retry-After")) or 1.0,
            )
        if status >= 500:
            raise TransientError(f"HTTP {status}", system=SYSTEM)
        if status >= 400:
            raise PermanentError(f"HTTP {status}: {response.text[:200]}", system=SYSTEM)
        return {"status_code": status, "body": response.text[:2000]}

    def close(self) -> None:
        self._http.close()
