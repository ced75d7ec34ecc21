"""The outside-system clients the handlers and agents use, built once per process from the settings.

`clients.get(Settings.hubspot_client)` makes a client with its settings part's factory (app.core.
settings) the first time it is asked for, so a process that never posts a webhook never needs one
configured, and no list here names the integrations. What a client needs from the database (HubSpot's
shared rate slots, Claude's spend ledger and model cache) is handed in here as `ClientDeps`. The SDKs
load with the first client that needs them. Tests pass settings pointed at local fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from app.clients.buffer import token_store
from app.clients.claude_ledger import DbModelCache, spend_ledger
from app.clients.rate_slots import DbRateSlots
from app.core.database import Database
from app.core.settings import ClientDeps, Settings


class Closable(Protocol):
    def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=Closable)


@dataclass
class Clients:
    settings: Settings
    # what the clients share through the database; only processes that never call HubSpot or
    # Claude may leave it out (those clients are then NotConfigured)
    db: Database | None = None
    sleep: Callable[[float], None] = time.sleep  # tests inject a recorder instead of waiting
    _built: dict[Any, Any] = field(default_factory=dict)

    def get(self, build: Callable[[Settings, ClientDeps], ClientT]) -> ClientT:
        """The client `build` makes (a settings part's `<system>_client`, such as
        `Settings.hubspot_client`), made once per process; NotConfigured when it cannot be."""
        if build not in self._built:
            self._built[build] = build(self.settings, self.deps())
        client: ClientT = self._built[build]
        return client

    def deps(self) -> ClientDeps:
        if self.db is None:
            return ClientDeps(sleep=self.sleep)
        return ClientDeps(
            sleep=self.sleep,
            rate_slots=DbRateSlots(self.db),
            spend_ledger=spend_ledger(self.settings, self.db),
            model_cache=DbModelCache(self.db),
            buffer_tokens=token_store(self.db, self.settings) if self.settings.buffer_token_key else None,
        )

    def close(self) -> None:
        for client in self._built.values():
            client.close()
        self._built.clear()
