"""All configuration, read once from `.env` and the environment.

Every setting has the environment name shown by its alias or upper-cased field name; `.env.example`
documents each one. Field validators (their checks are app.core.setting_values) refuse malformed
values, so a `Settings` instance is always usable; `app.core.config_check` turns validation errors
into a per-integration report.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import platformdirs
from pydantic import (
    Field,
    NonNegativeInt,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core import setting_values as values
from app.core.buffer_settings import BufferSettings
from integrations.claude_prices import DEFAULT_PRICES, ModelPrice

NonNegativeMoney = Annotated[Decimal, Field(ge=0)]


class Settings(BufferSettings, BaseSettings):  # Buffer's settings: app.core.buffer_settings
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
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
    # /docs loads Swagger UI's scripts from a CDN onto the origin of the approval pages: off in
    # production unless asked for (the OpenAPI schema stays at /openapi.json)
    api_docs: bool | None = None
    # uvicorn's own limits (it has no timeout for reading a request: see the README on proxies)
    http_keep_alive_seconds: PositiveInt = 5  # an idle kept-alive connection is closed after this
    http_max_concurrency: PositiveInt = 100  # connections and requests at once; more get a 503

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

    # --- the schedule: standard 5-field crontab, in CRON_TIMEZONE (app.schedule.runs) ------------
    report_cron: str = "0 9 * * *"
    report_grace_hours: float = Field(6, gt=0, le=168)  # a report missed by downtime is still sent this late
    sales_agent_cron: str = "0 8 * * 1-5"
    support_agent_cron: str = "*/15 8-17 * * 1-5"
    marketing_agent_cron: str = "0 10 * * 1"
    agent_grace_minutes: float = Field(10, ge=1, le=240)  # a missed agent run is made up only this late
    job_runs_retention_days: PositiveInt = 90

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

    # --- the agents (agents/) ------------------------------------------------------------------
    brand_voice: str = Field(
        "Warm, plain and brief: short sentences, no jargon, no hype, no exclamation marks. We write "
        "as the small Phoenix team we are, first person plural, and sign off as the team.",
        min_length=1,
        max_length=5000,
    )
    # the lowest tier of an agent's email, newsletters included; LOW lets small ones run at once
    agent_email_min_tier: Literal["LOW", "MEDIUM", "HIGH"] = "MEDIUM"
    agent_max_sources: int = Field(20, ge=1, le=200)  # deals, contacts or tickets in one run's prompt
    agent_max_output_tokens: int = Field(8192, ge=1024, le=64_000)
    sales_stale_days: PositiveInt = 14  # a deal with no activity for this long gets a follow-up
    sales_new_contact_days: PositiveInt = 7  # contacts created this recently get a first email
    support_memory_results: int = Field(4, ge=1, le=20)  # articles and past replies per ticket
    marketing_topic_days: PositiveInt = 30  # how far back memory is searched for newsletter topics
    newsletter_max_recipients: int = Field(10_000, ge=1, le=10_000)  # HubSpot search stops at 10,000

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
    anthropic_timeout_seconds: float = Field(120.0, gt=0)  # one request; long answers take a while
    anthropic_max_attempts: PositiveInt = 3
    anthropic_model_cache_hours: float = Field(24, gt=0)  # how long a models-list check is trusted
    anthropic_prompt_cache_ttl: Literal["5m", "1h"] = "5m"
    llm_daily_budget_usd: NonNegativeMoney = Decimal("5")  # per calendar day in CRON_TIMEZONE
    llm_prices_json: Annotated[dict[str, ModelPrice], NoDecode] = Field(default_factory=dict)  # see claude_prices

    hubspot_private_app_token: SecretStr | None = None
    hubspot_client_secret: SecretStr | None = None
    hubspot_base_url: str | None = None
    hubspot_timeout_seconds: float = Field(10.0, gt=0)
    # below the app's burst limit (Free/Starter 100, Pro/Ent 190): the limiter's fixed windows let
    # more through across a window boundary than HubSpot's rolling one allows
    hubspot_requests_per_10s: PositiveInt = 90
    hubspot_searches_per_second: int = Field(4, ge=1, le=5)  # CRM search has its own, lower limit
    # after a create that may have reached HubSpot, wait this long (search lags writes) before
    # looking for it; above the client's 30 s in-process wait, so the executor reschedules instead
    hubspot_write_recheck_seconds: float = Field(60.0, gt=30)

    brevo_api_key: SecretStr | None = None
    brevo_daily_limit: PositiveInt = 300
    brevo_batch_size: PositiveInt = 300
    brevo_base_url: str | None = None
    brevo_sender_email: str | None = None  # a sender verified in Brevo
    brevo_sender_name: str = Field("opsdesk", min_length=1, max_length=200)
    brevo_transactional_reserve: NonNegativeInt = 30  # of each day's limit, kept for one-to-one email
    brevo_quota_timezone: str | None = None  # the quota day's zone; CRON_TIMEZONE when unset
    brevo_dry_run: bool = False  # send nothing, record what would have been sent
    brevo_timeout_seconds: float = Field(15.0, gt=0)
    brevo_send_hour: int = Field(9, ge=0, le=23)  # campaign batches go out hourly from this hour on
    # an email that may have gone out is re-sent (same idempotency key) only this long after that
    # first send, then becomes `unknown`: Brevo drops a repeated key for 30 minutes only
    brevo_resend_window_seconds: float = Field(1500.0, gt=0, le=1800)

    notion_api_key: SecretStr | None = None
    notion_blog_database_id: str | None = None
    notion_base_url: str | None = None
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

    discord_webhook_url: SecretStr | None = None
    discord_escalation_role_id: str | None = None  # role pinged by CRITICAL approvals
    discord_timeout_seconds: float = Field(10.0, gt=0)
    discord_poll_seconds: float = Field(5.0, gt=0)
    discord_batch_size: PositiveInt = 10
    discord_max_attempts: PositiveInt = 30
    discord_backoff_base_seconds: float = Field(5.0, gt=0)
    discord_backoff_max_seconds: float = Field(600.0, gt=0)
    approval_reminder_hours: float = Field(24, gt=0)
    escalate_before_expiry_hours: float = Field(12, ge=0)

    # --- memory and embeddings (app.memory.store, integrations.embeddings) ----------------------------
    voyage_api_key: SecretStr | None = None
    voyage_base_url: str = "https://api.voyageai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    # unset: local when the `local` extra is installed, else none (full-text search only)
    embeddings_provider: Literal["local", "voyage", "openai", "none"] | None = None
    embeddings_model: str | None = None  # voyage-3.5 / text-embedding-3-small when unset
    embeddings_dimension: int | None = Field(None, ge=1, le=2000)  # HNSW indexes `vector` up to 2,000
    embeddings_batch_size: int = Field(64, ge=1, le=1000)
    embeddings_max_chars: int = Field(8000, ge=100, le=200_000)  # per text; the rest is not embedded
    embeddings_timeout_seconds: float = Field(30.0, gt=0)
    embeddings_query_timeout_seconds: float = Field(5.0, gt=0)  # a search's query: one try, then full text
    memory_search_candidates: int = Field(30, ge=1, le=1000)  # rows each method brings to the fusion
    memory_rrf_k: PositiveInt = 60
    memory_fts_weight: float = Field(1.0, ge=0)
    memory_vector_weight: float = Field(1.0, ge=0)
    memory_hnsw_ef_search: int = Field(100, ge=1, le=1000)
    memory_fts_rank_limit: int = Field(200, ge=10, le=100_000)  # more matches: rank the newest only
    memory_embed_interval_seconds: float = Field(60.0, gt=0)
    # kinds often searched on their own get a partial HNSW index each (comma-separated)
    memory_vector_index_kinds: Annotated[list[str], NoDecode] = [
        "kb_article",
        "decision",
        "feedback",
        "ticket",
        "report",
    ]
    # days per kind, merged over these defaults ("ticket=365,email_sent=0"); 0 keeps forever
    memory_retention_days: Annotated[dict[str, NonNegativeInt], NoDecode] = {
        "decision": 2557,
        "feedback": 2557,
        "action": 1095,
        "email_sent": 1095,
        "ticket": 1095,
        "report": 1095,
        "note": 1095,
    }
    audit_retention_days: NonNegativeInt = 2557  # 7 years; 0 keeps the audit log forever
    memory_archive_dir: Path | None = None  # <data dir>/archive when unset

    # --- validators (the checks themselves: app.core.setting_values) ----------------------------
    @field_validator("cron_timezone", "brevo_quota_timezone")
    @classmethod
    def _known_time_zone(cls, value: str | None) -> str | None:
        return values.known_time_zone(value)

    @field_validator("report_cron", "sales_agent_cron", "support_agent_cron", "marketing_agent_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        return values.crontab(value)

    @field_validator(
        "public_base_url",
        "anthropic_base_url",
        "hubspot_base_url",
        "brevo_base_url",
        "notion_base_url",
        "webhook_post_url",
        "supabase_url",
        "voyage_base_url",
        "openai_base_url",
    )
    @classmethod
    def _urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        return values.http_url(value, field=(info.field_name or "").upper())

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

    @field_validator("hubspot_private_app_token")
    @classmethod
    def _hubspot_token(cls, value: SecretStr | None) -> SecretStr | None:
        return values.hubspot_token(value)

    @field_validator("supabase_service_role_key")
    @classmethod
    def _supabase_key(cls, value: SecretStr | None) -> SecretStr | None:
        return values.supabase_key(value)

    @field_validator("discord_webhook_url")
    @classmethod
    def _discord_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        return values.discord_webhook(value)

    @field_validator("discord_escalation_role_id")
    @classmethod
    def _discord_role(cls, value: str | None) -> str | None:
        return values.discord_role(value)

    @field_validator(
        "ops_api_token",
        "approval_link_secret",
        "approval_pin",
        "anthropic_api_key",
        "brevo_api_key",
        "notion_api_key",
        "hubspot_client_secret",
        "supabase_service_role_key",
        "voyage_api_key",
        "openai_api_key",
    )
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return values.no_placeholder(value)

    @field_validator("llm_prices_json", mode="before")
    @classmethod
    def _prices_json(cls, value: object) -> object:
        return values.json_text(value)

    @field_validator("approval_link_old_secrets", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return values.comma_separated(value)

    @field_validator("memory_retention_days", mode="before")
    @classmethod
    def _retention_days(cls, value: object) -> object:
        return values.retention_days(value, defaults=cls.model_fields["memory_retention_days"].default)

    @field_validator("memory_vector_index_kinds", mode="before")
    @classmethod
    def _index_kinds(cls, value: object) -> object:
        return values.memory_kinds(value)

    @field_validator("embeddings_provider")
    @classmethod
    def _provider_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value in ("voyage", "openai") and info.data.get(f"{value}_api_key") is None:
            raise ValueError(f"{value} needs {value.upper()}_API_KEY")
        return value

    @field_validator("ops_api_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        return values.at_least(value, 16)

    @field_validator("approval_pin")
    @classmethod
    def _pin_length(cls, value: SecretStr | None) -> SecretStr | None:
        return values.at_least(value, 4, strip=True)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not (self.risk_recipients_medium < self.risk_recipients_high):
            raise ValueError("RISK_RECIPIENTS_MEDIUM must be below RISK_RECIPIENTS_HIGH")
        if not (self.risk_money_medium <= self.risk_money_high <= self.risk_money_critical):
            raise ValueError("risk money thresholds must rise: MEDIUM <= HIGH <= CRITICAL")
        return self

    # --- derived ----------------------------------------------------------------------------
    @property
    def llm_prices(self) -> dict[str, ModelPrice]:
        return {**DEFAULT_PRICES, **self.llm_prices_json}

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

    def approval_ttl_hours(self, tier: str) -> float:
        return {
            "MEDIUM": self.approval_ttl_hours_medium,
            "HIGH": self.approval_ttl_hours_high,
            "CRITICAL": self.approval_ttl_hours_critical,
        }.get(tier, self.approval_ttl_hours_medium)
