"""All configuration, read once from `.env` and the environment.

`Settings` is its parts composed: one mixin per part of `opsdesk config check` (app.core.settings.
service, .integrations, .memory), each with flat field names, so every environment name is its
field name upper-cased; `.env.example` documents each one. Validators refuse malformed values, so a
`Settings` instance is always usable; `app.core.config_check` turns validation errors into a
per-part report. Config check, `/healthz`, `app.clients.Clients` and the docs test take the parts
from `parts()`: a part is declared once, here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import platformdirs

from app.core.settings.buffer import BufferSettings
from app.core.settings.integrations import (
    AnthropicSettings,
    BrevoSettings,
    DiscordSettings,
    HubSpotSettings,
    NotionSettings,
)
from app.core.settings.memory import MemorySettings
from app.core.settings.part import ClientDeps, SettingsPart
from app.core.settings.plausible import PlausibleSettings
from app.core.settings.service import (
    AgentSettings,
    ApprovalLinkSettings,
    DatabaseSettings,
    ExecutorSettings,
    RiskSettings,
    ScheduleSettings,
    ServiceSettings,
)

__all__ = ["ClientDeps", "Settings", "SettingsPart", "parts"]


class Settings(
    ServiceSettings,
    ApprovalLinkSettings,
    DatabaseSettings,
    ScheduleSettings,
    AgentSettings,
    RiskSettings,
    ExecutorSettings,
    AnthropicSettings,
    HubSpotSettings,
    BrevoSettings,
    NotionSettings,
    BufferSettings,
    DiscordSettings,
    PlausibleSettings,
    MemorySettings,
):
    """Every part, in the order config check prints them."""

    @property
    def time_zone(self) -> ZoneInfo:
        return ZoneInfo(self.cron_timezone)

    @property
    def email_quota_timezone(self) -> str:
        return self.brevo_quota_timezone or self.cron_timezone

    @property
    def database_mode(self) -> Literal["postgres", "supabase", "embedded"]:
        if self.database_url is not None and self.database_url.get_secret_value():
            return "postgres"
        if self.supabase_url and self.supabase_service_role_key is not None:
            return "supabase"
        return "embedded"

    @property
    def docs_enabled(self) -> bool:
        return self.api_docs if self.api_docs is not None else self.opsdesk_env == "development"

    @property
    def secure_cookies(self) -> bool:
        """Cookies are Secure when people reach opsdesk over https (behind a proxy, say)."""
        return self.public_base_url.startswith("https://")

    @property
    def data_dir(self) -> Path:
        if self.opsdesk_data_dir is not None:
            return self.opsdesk_data_dir.expanduser()
        return Path(platformdirs.user_data_dir("opsdesk", appauthor=False))

    @property
    def archive_dir(self) -> Path:
        """Where memory retention writes what it deletes."""
        return (self.memory_archive_dir or self.data_dir / "archive").expanduser()


def parts(settings_class: type[SettingsPart] = Settings) -> tuple[type[SettingsPart], ...]:
    """The parts `settings_class` is composed of, in config check's order (its bases' order)."""
    return tuple(cls for cls in settings_class.__mro__ if issubclass(cls, SettingsPart) and "part" in vars(cls))
