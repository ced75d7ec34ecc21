"""Plausible Analytics (integrations.plausible): the daily report's Website section and the
marketing agent's context. A module of its own, keeping integrations.py under 400 lines."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from app.core.settings.part import ClientDeps, OptionalHttpUrl, Secret, SettingsPart
from integrations.errors import NotConfigured

if TYPE_CHECKING:
    from integrations.plausible import PlausibleClient, PlausibleConfig


class PlausibleSettings(SettingsPart):
    part: ClassVar[str] = "plausible"
    required: ClassVar[tuple[str, ...]] = ("plausible_api_key", "plausible_site_id")
    health_setting: ClassVar[str | None] = "plausible_api_key"

    plausible_api_key: Secret = None  # a Stats API key
    plausible_site_id: str | None = None  # the site's domain, as Plausible names it
    plausible_base_url: OptionalHttpUrl = None  # https://plausible.io when unset; a self-hosted CE: its URL
    plausible_timeout_seconds: float = Field(10.0, gt=0)  # one query; a report makes 16

    def plausible_config(self) -> PlausibleConfig:
        from integrations import plausible

        if self.plausible_api_key is None or not self.plausible_site_id:
            raise NotConfigured(
                "PLAUSIBLE_API_KEY and PLAUSIBLE_SITE_ID must both be configured", system=plausible.SYSTEM
            )
        return plausible.PlausibleConfig(
            api_key=self.plausible_api_key,
            site_id=self.plausible_site_id,
            base_url=self.plausible_base_url or plausible.DEFAULT_BASE_URL,
            timeout_seconds=self.plausible_timeout_seconds,
        )

    def plausible_client(self, deps: ClientDeps) -> PlausibleClient:
        from integrations.plausible import PlausibleClient

        return PlausibleClient(self.plausible_config(), breaker=deps.breaker, sleep=deps.sleep)
