"""All configuration, read once from `.env` and the environment.

Every setting has the environment name shown by its alias or upper-cased field name; `.env.example`
documents each one. Field validators refuse malformed values, so a `Settings` instance is always
usable; `app.config_check` turns validation errors into a per-integration report.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import Field, PositiveInt, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "xxx", "todo"}
_DISCORD_HOSTS = {"discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"}
_DISCORD_WEBHOOK_PATH = re.compile(r"^/api/(v\d+/)?webhooks/\d+/[\w-]+/?$")
_HUBSPOT_PRIVATE_APP = re.compile(r"^pat-[a-z]{2}\d+-[0-9a-f-]{20,}$")
_UUID_LIKE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

NonNegativeMoney = Annotated[Decimal, Field(ge=0)]


def is_loopback_host(host: str | None) -> bool:
    return host in {"127.0.0.1", "localhost", "::1"} or (host or "").startswith("127.")


def _http_url(value: str | None, *, field: str) -> str | None:
    if value in (None, ""):
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{field} must be an http(s) URL")
    return value.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        env_ignore_empty=True,  # `NAME=` lines copied from .env.example mean "not set"
    )

    # --- the service ------------------------------------------------------------------------
    opsdesk_env: Literal["development", "production"] = "development"
    opsdesk_host: str = "127.0.0.1"
    opsdesk_port: int = Field(8000, ge=1, le=65535)
    public_base_url: str = "http://127.0.0.1:8000"
    ops_api_token: SecretStr | None = None
    approval_link_secret: SecretStr | None = None
    approval_link_old_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    max_request_bytes: PositiveInt = 1_048_576
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- approving by link ------------------------------------------------------------------
    approval_pin: SecretStr | None = None  # CRITICAL actions also need it on the review page
    approval_pin_max_tries: PositiveInt = 5  # wrong PINs per action before link approval locks
    inbox_link_hours: float = Field(24, gt=0)

    # --- the database -----------------------------------------------------------------------
    database_url: SecretStr | None = None
    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    opsdesk_data_dir: Path | None = None
    db_pool_max: PositiveInt = 20
    db_timeout_seconds: float = Field(15.0, gt=0)

    # --- time -------------------------------------------------------------------------------
    cron_timezone: str = "America/Phoenix"

    # --- risk policy (DESIGN.md table; every number is a setting) -------------------------------
    risk_recipients_medium: PositiveInt = 50
    risk_recipients_high: PositiveInt = 300
    risk_money_medium: NonNegativeMoney = Decimal("10")
    risk_money_high: NonNegativeMoney = Decimal("50")
    risk_money_critical: NonNegativeMoney = Decimal("100")
    auto_run_low: bool = True
    approval_ttl_hours_medium: float = Field(72, gt=0)
    approval_ttl_hours_high: float = Field(72, gt=0)
    approval_ttl_hours_critical: float = Field(72, gt=0)

    # --- executor ---------------------------------------------------------------------------
    executor_lease_seconds: PositiveInt = 300
    executor_max_attempts: PositiveInt = 5
    executor_poll_seconds: float = Field(2.0, gt=0)
    executor_batch_size: PositiveInt = 10
    executor_backoff_base_seconds: float = Field(5.0, gt=0)
    executor_backoff_max_seconds: float = Field(900.0, gt=0)
    webhook_post_url: str | None = None
    webhook_post_timeout_seconds: float = Field(10.0, gt=0)

    # --- integrations -----------------------------------------------------------------------
    anthropic_api_key: SecretStr | None = None
    anthropic_model: str = "claude-sonnet-5-5"
    anthropic_base_url: str | None = None

    hubspot_private_app_token: SecretStr | None = None
    hubspot_client_secret: SecretStr | None = None
    hubspot_base_url: str | None = None

    brevo_api_key: SecretStr | None = None
    brevo_daily_limit: PositiveInt = 300
    brevo_batch_size: PositiveInt = 300
    brevo_base_url: str | None = None

    notion_api_key: SecretStr | None = None
    notion_blog_database_id: str | None = None
    notion_base_url: str | None = None

    discord_webhook_url: SecretStr | None = None

    # --- validators -------------------------------------------------------------------------
    @field_validator("cron_timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("public_base_url", "anthropic_base_url", "hubspot_base_url", "brevo_base_url",
                     "notion_base_url", "webhook_post_url", "supabase_url")
    @classmethod
    def _urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _http_url(value, field=info.field_name.upper())

    @field_validator("hubspot_private_app_token")
    @classmethod
    def _private_app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        token = value.get_secret_value().strip()
        if _UUID_LIKE.match(token):
            raise ValueError(
                "looks like a legacy HubSpot API key (hapikey); use a private-app token (pat-...)"
            )
        if not _HUBSPOT_PRIVATE_APP.match(token):
            raise ValueError("does not look like a HubSpot private-app token (pat-<region>-...)")
        return SecretStr(token)

    @field_validator("discord_webhook_url")
    @classmethod
    def _discord_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value().strip())
        local = is_loopback_host(parts.hostname) and parts.scheme in {"http", "https"}
        discord = parts.scheme == "https" and parts.hostname in _DISCORD_HOSTS
        if not (local or discord) or not _DISCORD_WEBHOOK_PATH.match(parts.path):
            raise ValueError("is not a Discord webhook URL (https://discord.com/api/webhooks/<id>/<token>)")
        return value

    @field_validator("ops_api_token", "approval_link_secret", "approval_pin", "anthropic_api_key",
                     "brevo_api_key", "notion_api_key", "hubspot_client_secret", "supabase_service_role_key")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real secret")
        return value

    @field_validator("approval_link_old_secrets", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ops_api_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("approval_pin")
    @classmethod
    def _pin_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 4:
            raise ValueError("must be at least 4 characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not (self.risk_recipients_medium < self.risk_recipients_high):
            raise ValueError("RISK_RECIPIENTS_MEDIUM must be below RISK_RECIPIENTS_HIGH")
        if not (self.risk_money_medium <= self.risk_money_high <= self.risk_money_critical):
            raise ValueError("risk money thresholds must rise: MEDIUM <= HIGH <= CRITICAL")
        return self

    # --- derived ----------------------------------------------------------------------------
    @property
    def time_zone(self) -> ZoneInfo:
        return ZoneInfo(self.cron_timezone)

    @property
    def database_mode(self) -> Literal["postgres", "supabase", "embedded"]:
        if self.database_url is not None and self.database_url.get_secret_value():
            return "postgres"
        if self.supabase_url and self.supabase_service_role_key is not None:
            return "supabase"
        return "embedded"

    @property
    def secure_cookies(self) -> bool:
        """Cookies are Secure when people reach opsdesk over https (behind a proxy, say)."""
        return self.public_base_url.startswith("https://")

    @property
    def data_dir(self) -> Path:
        if self.opsdesk_data_dir is not None:
            return self.opsdesk_data_dir.expanduser()
        return Path(platformdirs.user_data_dir("opsdesk", appauthor=False))

    def approval_ttl_hours(self, tier: str) -> float:
        return {
            "MEDIUM": self.approval_ttl_hours_medium,
            "HIGH": self.approval_ttl_hours_high,
            "CRITICAL": self.approval_ttl_hours_critical,
        }.get(tier, self.approval_ttl_hours_medium)
