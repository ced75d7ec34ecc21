"""The outside-system clients the handlers use, built once per process from the settings.

Each client is created on first use, so a process that never posts a webhook never needs one
configured. Tests pass clients pointed at local fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.errors import PermanentError
from app.settings import Settings
from integrations.webhook import WebhookClient


@dataclass
class Clients:
    settings: Settings
    sleep: Callable[[float], None] = time.sleep  # tests inject a recorder instead of waiting
    _built: dict[str, Any] = field(default_factory=dict)

    def _get(self, name: str, build: Any) -> Any:
        if name not in self._built:
            self._built[name] = build()
        return self._built[name]

    @property
    def webhook(self) -> WebhookClient:
        url = self.settings.webhook_post_url
        if not url:
            raise PermanentError("WEBHOOK_POST_URL is not configured", system="webhook")
        return self._get("webhook", lambda: WebhookClient(
            url, timeout=self.settings.webhook_post_timeout_seconds, sleep=self.sleep))

    def close(self) -> None:
        for client in self._built.values():
            client.close()
        self._built.clear()
