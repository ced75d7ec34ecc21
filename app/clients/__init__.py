"""The outside-system clients the handlers use, built once per process from the settings.

Each client is created on first use from its typed config (app.clients.configs), so a process that
never posts a webhook never needs one configured; what a client needs from the database (HubSpot's
shared rate slots) is handed in here. The SDKs load with the first client that needs them. Tests
pass clients pointed at local fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from app.clients.buffer import buffer_client
from app.clients.configs import brevo_config, hubspot_config, notion_config, webhook_config
from app.clients.rate_slots import DbRateSlots
from app.core.database import Database
from app.core.settings import Settings
from integrations.brevo import BrevoClient
from integrations.buffer import BufferClient
from integrations.errors import NotConfigured
from integrations.hubspot import HubSpotClient
from integrations.notion import NotionClient
from integrations.webhook import WebhookClient

ClientT = TypeVar("ClientT")


@dataclass
class Clients:
    settings: Settings
    # HubSpot's rate limit is counted in the database (shared by every process); only processes
    # that never call HubSpot may leave it out
    db: Database | None = None
    sleep: Callable[[float], None] = time.sleep  # tests inject a recorder instead of waiting
    _built: dict[str, Any] = field(default_factory=dict)

    def _get(self, name: str, build: Callable[[], ClientT]) -> ClientT:
        if name not in self._built:
            self._built[name] = build()
        return cast(ClientT, self._built[name])  # one name, one client type

    @property
    def webhook(self) -> WebhookClient:
        config = webhook_config(self.settings)
        return self._get("webhook", lambda: WebhookClient(config, sleep=self.sleep))

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
        config = notion_config(self.settings)
        return self._get("notion", lambda: NotionClient(config, sleep=self.sleep))

    @property
    def brevo(self) -> BrevoClient:
        config = brevo_config(self.settings)
        return self._get("brevo", lambda: BrevoClient(config, sleep=self.sleep))

    @property
    def buffer(self) -> BufferClient:
        db = self.db
        if db is None:
            raise NotConfigured(
                "Buffer's rate limits and tokens live in the database: Clients needs it", system="buffer"
            )
        return self._get("buffer", lambda: buffer_client(self.settings, db, sleep=self.sleep))

    def close(self) -> None:
        for client in self._built.values():
            client.close()
        self._built.clear()
