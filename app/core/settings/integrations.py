"""One part per outside system the actions and agents use: its settings, what `opsdesk config
check` and `/healthz` show of it, its typed config and its client. Each method imports its
integration when called, so loading the settings never loads an SDK.

Adding an integration is one class here (named in `Settings`' bases), its module in integrations/,
its kind module in app/kinds/ and the docs (README "Layout" lists the steps; tests/test_parts.py
shows config check, /healthz and Clients take a new part with no other edit)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    NonNegativeInt,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import NoDecode

from app.core import setting_values as values
from app.core.settings.part import (
    ClientDeps,
    NonNegativeMoney,
    OptionalHttpUrl,
    OptionalTimeZoneName,
    Secret,
    SettingsPart,
)
from integrations.claude_prices import DEFAULT_PRICES, ModelPrice
from integrations.errors import NotConfigured

if TYPE_CHECKING:
    from integrations.brevo import BrevoClient, BrevoConfig
    from integrations.claude import ClaudeClient, ClaudeConfig
    from integrations.discord import DiscordClient, DiscordConfig
    from integrations.hubspot import HubSpotClient, HubSpotConfig
    from integrations.notion import NotionClient, NotionConfig


class AnthropicSettings(SettingsPart):
    part: ClassVar[str] = "anthropic"
    required: ClassVar[tuple[str, ...]] = ("anthropic_api_key",)
    health_setting: ClassVar[str | None] = "anthropic_api_key"

    anthropic_api_key: Secret = None
    anthropic_model: str = "claude-sonnet-5-5"
    anthropic_base_url: OptionalHttpUrl = None
    anthropic_timeout_seconds: float = Field(120.0, gt=0)  # one request; long answers take a while
    anthropic_max_attempts: PositiveInt = 3
    anthropic_model_cache_hours: float = Field(24, gt=0)  # how long a models-list check is trusted
    anthropic_prompt_cache_ttl: Literal["5m", "1h"] = "5m"
    llm_daily_budget_usd: NonNegativeMoney = Decimal("5")  # per calendar day in CRON_TIMEZONE
    # see integrations.claude_prices; decoded by the validator so bad JSON is reported, not raised
    llm_prices_json: Annotated[dict[str, ModelPrice], NoDecode, BeforeValidator(values.json_text)] = Field(
        default_factory=dict
    )

    @property
    def llm_prices(self) -> dict[str, ModelPrice]:
        return {**DEFAULT_PRICES, **self.llm_prices_json}

    def claude_config(self) -> ClaudeConfig:
        from integrations import claude

        if self.anthropic_api_key is None:
            raise NotConfigured("ANTHROPIC_API_KEY is not set", system=claude.SYSTEM)
        return claude.ClaudeConfig(
            api_key=self.anthropic_api_key,
            model=self.anthropic_model,
            base_url=self.anthropic_base_url or claude.DEFAULT_BASE_URL,
            timeout_seconds=self.anthropic_timeout_seconds,
            max_attempts=self.anthropic_max_attempts,
            model_cache_hours=self.anthropic_model_cache_hours,
            prompt_cache_ttl=self.anthropic_prompt_cache_ttl,
            prices=self.llm_prices,
        )

    def claude_client(self, deps: ClientDeps) -> ClaudeClient:
        from integrations.claude import SYSTEM, ClaudeClient

        config = self.claude_config()
        if deps.spend_ledger is None or deps.model_cache is None:
            raise NotConfigured("Claude's spend and model choice are kept in the database: give it", system=SYSTEM)
        return ClaudeClient(
            config, ledger=deps.spend_ledger, model_cache=deps.model_cache, breaker=deps.breaker, sleep=deps.sleep
        )


class HubSpotSettings(SettingsPart):
    part: ClassVar[str] = "hubspot"
    required: ClassVar[tuple[str, ...]] = ("hubspot_private_app_token",)
    health_setting: ClassVar[str | None] = "hubspot_private_app_token"

    hubspot_private_app_token: Annotated[SecretStr | None, AfterValidator(values.hubspot_token)] = None
    hubspot_client_secret: Secret = None
    hubspot_base_url: OptionalHttpUrl = None
    hubspot_timeout_seconds: float = Field(10.0, gt=0)
    # below the app's burst limit (Free/Starter 100, Pro/Ent 190): the limiter's fixed windows let
    # more through across a window boundary than HubSpot's rolling one allows
    hubspot_requests_per_10s: PositiveInt = 90
    hubspot_searches_per_second: int = Field(4, ge=1, le=5)  # CRM search has its own, lower limit
    # after a create that may have reached HubSpot, wait this long (search lags writes) before
    # looking for it; above the client's 30 s in-process wait, so the executor reschedules
    hubspot_write_recheck_seconds: float = Field(60.0, gt=30)

    def hubspot_config(self) -> HubSpotConfig:
        from integrations import hubspot

        if self.hubspot_private_app_token is None:
            raise NotConfigured("HUBSPOT_PRIVATE_APP_TOKEN is not configured", system=hubspot.SYSTEM)
        return hubspot.HubSpotConfig(
            access_token=self.hubspot_private_app_token,
            base_url=self.hubspot_base_url or hubspot.DEFAULT_BASE_URL,
            timeout_seconds=self.hubspot_timeout_seconds,
            requests_per_10s=self.hubspot_requests_per_10s,
            searches_per_second=self.hubspot_searches_per_second,
            write_recheck_seconds=self.hubspot_write_recheck_seconds,
        )

    def hubspot_client(self, deps: ClientDeps) -> HubSpotClient:
        from integrations.hubspot import SYSTEM, HubSpotClient

        config = self.hubspot_config()
        if deps.rate_slots is None:
            raise NotConfigured("HubSpot's rate limit is shared through the database: Clients needs it", system=SYSTEM)
        return HubSpotClient(config, slots=deps.rate_slots, breaker=deps.breaker, sleep=deps.sleep)


class BrevoSettings(SettingsPart):
    part: ClassVar[str] = "brevo"
    required: ClassVar[tuple[str, ...]] = ("brevo_api_key", "brevo_sender_email")
    health_setting: ClassVar[str | None] = "brevo_api_key"

    brevo_api_key: Secret = None
    brevo_sender_email: str | None = None  # a sender verified in Brevo
    brevo_sender_name: str = Field("opsdesk", min_length=1, max_length=200)
    brevo_daily_limit: PositiveInt = 300
    brevo_batch_size: PositiveInt = 300
    brevo_transactional_reserve: NonNegativeInt = 30  # of each day's limit, kept for one-to-one email
    brevo_quota_timezone: OptionalTimeZoneName = None  # the quota day's zone; CRON_TIMEZONE when unset
    brevo_dry_run: bool = False  # send nothing, record what would have been sent
    brevo_timeout_seconds: float = Field(15.0, gt=0)
    brevo_send_hour: int = Field(9, ge=0, le=23)  # campaign batches go out hourly from this hour on
    # an email that may have gone out is re-sent (same idempotency key) only this long after that
    # first send, then becomes `unknown`: Brevo drops a repeated key for 30 minutes only
    brevo_resend_window_seconds: float = Field(1500.0, gt=0, le=1800)
    brevo_base_url: OptionalHttpUrl = None

    @field_validator("brevo_sender_email")
    @classmethod
    def _sender_email(cls, value: str | None) -> str | None:
        return values.email_address(value)

    @field_validator("brevo_transactional_reserve")
    @classmethod
    def _reserve_below_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = info.data.get("brevo_daily_limit")
        if limit is not None and value >= limit:
            raise ValueError(f"must be below BREVO_DAILY_LIMIT ({limit}), or campaigns could never send")
        return value

    def brevo_config(self) -> BrevoConfig:
        from integrations import brevo

        if self.brevo_api_key is None or self.brevo_sender_email is None:
            raise NotConfigured("BREVO_API_KEY and BREVO_SENDER_EMAIL must both be configured", system=brevo.SYSTEM)
        return brevo.BrevoConfig(
            api_key=self.brevo_api_key,
            sender=brevo.Address(email=self.brevo_sender_email, name=self.brevo_sender_name),
            base_url=self.brevo_base_url or brevo.DEFAULT_BASE_URL,
            timeout_seconds=self.brevo_timeout_seconds,
        )

    def brevo_client(self, deps: ClientDeps) -> BrevoClient:
        from integrations.brevo import BrevoClient

        return BrevoClient(self.brevo_config(), breaker=deps.breaker, sleep=deps.sleep)


class NotionSettings(SettingsPart):
    part: ClassVar[str] = "notion"
    required: ClassVar[tuple[str, ...]] = ("notion_api_key", "notion_blog_database_id")
    health_setting: ClassVar[str | None] = "notion_api_key"

    notion_api_key: Secret = None
    notion_blog_database_id: str | None = None
    notion_base_url: OptionalHttpUrl = None
    notion_kb_database_id: str | None = None
    notion_timeout_seconds: float = Field(30.0, gt=0)
    notion_max_attempts: PositiveInt = 3
    # after a page create that may have reached Notion, wait this long (a data-source query lags a
    # new page) before looking for it; above the 30 s in-process wait, so the executor reschedules
    notion_create_recheck_seconds: float = Field(60.0, gt=30)
    notion_title_property: str = Field("Name", min_length=1)
    notion_tags_property: str = Field("Tags", min_length=1)
    notion_status_property: str = Field("Status", min_length=1)
    notion_draft_status: str = Field("Draft", min_length=1)
    notion_id_property: str = Field("opsdesk_id", min_length=1)  # rich_text: finds a page after a retry

    def notion_config(self) -> NotionConfig:
        from integrations import notion

        if self.notion_api_key is None:
            raise NotConfigured("NOTION_API_KEY is not configured", system=notion.SYSTEM)
        return notion.NotionConfig(
            api_key=self.notion_api_key,
            base_url=self.notion_base_url or notion.DEFAULT_BASE_URL,
            timeout_seconds=self.notion_timeout_seconds,
            max_attempts=self.notion_max_attempts,
            create_recheck_seconds=self.notion_create_recheck_seconds,
            title_property=self.notion_title_property,
            tags_property=self.notion_tags_property,
            status_property=self.notion_status_property,
            draft_status=self.notion_draft_status,
            id_property=self.notion_id_property,
            kb_database_id=self.notion_kb_database_id,
        )

    def notion_client(self, deps: ClientDeps) -> NotionClient:
        from integrations.notion import NotionClient

        return NotionClient(self.notion_config(), breaker=deps.breaker, sleep=deps.sleep)


class DiscordSettings(SettingsPart):
    part: ClassVar[str] = "discord"
    required: ClassVar[tuple[str, ...]] = ("discord_webhook_url",)
    health_setting: ClassVar[str | None] = "discord_webhook_url"

    discord_webhook_url: Annotated[SecretStr | None, AfterValidator(values.discord_webhook)] = None
    # role pinged by CRITICAL approvals
    discord_escalation_role_id: Annotated[str | None, AfterValidator(values.discord_role)] = None
    discord_timeout_seconds: float = Field(10.0, gt=0)
    discord_poll_seconds: float = Field(5.0, gt=0)
    discord_batch_size: PositiveInt = 10
    discord_max_attempts: PositiveInt = 30
    discord_backoff_base_seconds: float = Field(5.0, gt=0)
    discord_backoff_max_seconds: float = Field(600.0, gt=0)
    approval_reminder_hours: float = Field(24, gt=0)
    escalate_before_expiry_hours: float = Field(12, ge=0)

    def discord_config(self) -> DiscordConfig:
        from integrations import discord

        if self.discord_webhook_url is None:
            raise NotConfigured("DISCORD_WEBHOOK_URL is not configured", system=discord.SYSTEM)
        return discord.DiscordConfig(webhook_url=self.discord_webhook_url, timeout_seconds=self.discord_timeout_seconds)

    def discord_client(self, deps: ClientDeps) -> DiscordClient:
        from integrations.discord import DiscordClient

        return DiscordClient(self.discord_config(), breaker=deps.breaker, sleep=deps.sleep)
