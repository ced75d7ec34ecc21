"""The outside-system clients the handlers use, built once per process from the settings.

Each client is created on first use, so a process that never posts a webhook never needs one
configured. Tests pass clients pointed at local fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.client_configs import hubspot_config
from app.database import Database
from app.errors import PermanentError
from app.rate_slots import DbRateSlots
from app.settings import Settings
from integrations.errors import NotConfigured
from integrations.hubspot import HubSpotClient
from integrations.webhook import WebhookClient

if TYPE_CHECKING:
    from integrations.brevo import BrevoClient
    from integrations.notion import NotionClient


@dataclass
class Clients:
    settings: Settings
    # HubSpot's rate limit is counted in the database (shared by every process); only processes
    # that never call HubSpot may leave it out
    db: Database | None = None
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
        return self._get(
            "webhook", lambda: WebhookClient(url, timeout=self.settings.webhook_post_timeout_seconds, sleep=self.sleep)
        )

    @property
    def hubspot(self) -> HubSpotClient:
        config = hubspot_config(self.settings)
        db = self.db
        if db is None:
            raise NotConfigured(
                "HubSpot's rate limit is shared through the database: Clients needs it", system="hubspot"
            )
        return self._get("hubspot", lambda: HubSpotClient(config, slots=DbRateSlots(db), sleep=self.sleep))

    @property
    def notion(self) -> NotionClient:
        from integrations.notion import NotionClient  # the SDK loads only in processes that use Notion

        if self.settings.notion_api_key is None:
            raise PermanentError("NOTION_API_KEY is not configured", system="notion")
        return self._get("notion", lambda: NotionClient(self.settings, sleep=self.sleep))

    @property
    def brevo(self) -> BrevoClient:
        from integrations.brevo import Address, BrevoClient  # the SDK loads only where email is sent

        settings = self.settings
        if settings.brevo_api_key is None or settings.brevo_sender_email is None:
            raise PermanentError("BREVO_API_KEY and BREVO_SENDER_EMAIL must both be configured", system="brevo")
        api_key = settings.brevo_api_key.get_secret_value()
        sender = Address(email=settings.brevo_sender_email, name=settings.brevo_sender_name)
        return self._get(
            "brevo",
            lambda: BrevoClient(
                api_key,
                sender=sender,
                base_url=settings.brevo_base_url,
                timeout=settings.brevo_timeout_seconds,
                sleep=self.sleep,
            ),
        )

    def close(self) -> None:
        for client in self._built.values():
            client.close()
        self._built.clear()
