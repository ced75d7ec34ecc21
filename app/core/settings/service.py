"""The parts of the service itself: the HTTP service, approving by link, the database, the schedule,
the agents, the risk policy and the executor (with the generic webhook it posts to)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PositiveInt, SecretStr, model_validator
from pydantic_settings import NoDecode

from app.core import setting_values as values
from app.core.settings.part import (
    ClientDeps,
    Crontab,
    HttpUrl,
    NonNegativeMoney,
    OptionalHttpUrl,
    Secret,
    SettingsPart,
    TimeZoneName,
    rule_broken,
)

if TYPE_CHECKING:
    from integrations.webhook import WebhookClient, WebhookConfig


class ServiceSettings(SettingsPart):
    part: ClassVar[str] = "service"
    required: ClassVar[tuple[str, ...]] = ("ops_api_token", "approval_link_secret")
    always_on: ClassVar[bool] = True

    opsdesk_env: Literal["development", "production"] = "development"
    opsdesk_host: str = "127.0.0.1"
    opsdesk_port: int = Field(8000, ge=1, le=65535)
    public_base_url: HttpUrl = "http://127.0.0.1:8000"
    ops_api_token: Annotated[Secret, AfterValidator(lambda value: values.at_least(value, 16))] = None
    approval_link_secret: Secret = None
    approval_link_old_secrets: Annotated[list[SecretStr], NoDecode, BeforeValidator(values.comma_separated)] = Field(
        default_factory=list
    )
    max_request_bytes: PositiveInt = 1_048_576
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # /docs loads Swagger UI's scripts from a CDN onto the origin of the approval pages: off in
    # production unless asked for (the OpenAPI schema stays at /openapi.json)
    api_docs: bool | None = None
    # uvicorn's own limits (it has no timeout for reading a request: see the README on proxies)
    http_keep_alive_seconds: PositiveInt = 5  # an idle kept-alive connection is closed after this
    http_max_concurrency: PositiveInt = 100  # connections and requests at once; more get a 503


class ApprovalLinkSettings(SettingsPart):
    part: ClassVar[str] = "approval links"
    always_on: ClassVar[bool] = True

    # CRITICAL actions also need it on the review page
    approval_pin: Annotated[Secret, AfterValidator(lambda value: values.at_least(value, 4, strip=True))] = None
    approval_pin_max_tries: PositiveInt = 5  # wrong PINs per action before link approval locks
    inbox_link_hours: float = Field(24, gt=0)


class DatabaseSettings(SettingsPart):
    part: ClassVar[str] = "database"
    always_on: ClassVar[bool] = True

    database_url: SecretStr | None = None
    supabase_url: OptionalHttpUrl = None
    supabase_service_role_key: Annotated[
        SecretStr | None, AfterValidator(values.supabase_key), AfterValidator(values.no_placeholder)
    ] = None
    opsdesk_data_dir: Path | None = None
    db_pool_max: PositiveInt = 20
    db_timeout_seconds: float = Field(15.0, gt=0)


class ScheduleSettings(SettingsPart):
    """Standard 5-field crontabs, in CRON_TIMEZONE (app.schedule). Each agent's crontab is here,
    named by its `cron_setting` (agents/)."""

    part: ClassVar[str] = "schedule"
    always_on: ClassVar[bool] = True

    cron_timezone: TimeZoneName = "America/Phoenix"
    report_cron: Crontab = "0 9 * * *"
    report_grace_hours: float = Field(6, gt=0, le=168)  # a report missed by downtime is still sent this late
    sales_agent_cron: Crontab = "0 8 * * 1-5"
    support_agent_cron: Crontab = "*/15 8-17 * * 1-5"
    marketing_agent_cron: Crontab = "0 10 * * 1"
    agent_grace_minutes: float = Field(10, ge=1, le=240)  # a missed agent run is made up only this late
    job_runs_retention_days: PositiveInt = 90


class AgentSettings(SettingsPart):
    """The agents (agents/); they also need the anthropic and hubspot parts (and brevo and notion
    for what they draft)."""

    part: ClassVar[str] = "agents"
    always_on: ClassVar[bool] = True

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


class RiskSettings(SettingsPart):
    """DESIGN.md's table; every number is a setting."""

    part: ClassVar[str] = "risk policy"
    always_on: ClassVar[bool] = True

    risk_recipients_medium: PositiveInt = 50
    risk_recipients_high: PositiveInt = 300
    risk_money_medium: NonNegativeMoney = Decimal("10")
    risk_money_high: NonNegativeMoney = Decimal("50")
    risk_money_critical: NonNegativeMoney = Decimal("100")
    auto_run_low: bool = True
    approval_ttl_hours_medium: float = Field(72, gt=0)
    approval_ttl_hours_high: float = Field(72, gt=0)
    approval_ttl_hours_critical: float = Field(72, gt=0)

    @model_validator(mode="after")
    def _thresholds_rise(self) -> RiskSettings:
        if not (self.risk_recipients_medium < self.risk_recipients_high):
            raise rule_broken("RISK_RECIPIENTS_MEDIUM must be below RISK_RECIPIENTS_HIGH", *RiskSettings.model_fields)
        if not (self.risk_money_medium <= self.risk_money_high <= self.risk_money_critical):
            raise rule_broken("risk money thresholds must rise: MEDIUM <= HIGH <= CRITICAL", *RiskSettings.model_fields)
        return self

    def approval_ttl_hours(self, tier: str) -> float:
        return {
            "MEDIUM": self.approval_ttl_hours_medium,
            "HIGH": self.approval_ttl_hours_high,
            "CRITICAL": self.approval_ttl_hours_critical,
        }.get(tier, self.approval_ttl_hours_medium)


class ExecutorSettings(SettingsPart):
    """The executor, and the generic webhook its `webhook.post` kind posts to."""

    part: ClassVar[str] = "executor"
    always_on: ClassVar[bool] = True

    executor_lease_seconds: PositiveInt = 300
    executor_max_attempts: PositiveInt = 5
    executor_poll_seconds: float = Field(2.0, gt=0)
    executor_batch_size: PositiveInt = 10
    executor_backoff_base_seconds: float = Field(5.0, gt=0)
    executor_backoff_max_seconds: float = Field(900.0, gt=0)
    webhook_post_url: OptionalHttpUrl = None
    webhook_post_timeout_seconds: float = Field(10.0, gt=0)

    def webhook_config(self) -> WebhookConfig:
        from integrations import webhook
        from integrations.errors import NotConfigured

        if not self.webhook_post_url:
            raise NotConfigured("WEBHOOK_POST_URL is not configured", system=webhook.SYSTEM)
        return webhook.WebhookConfig(url=self.webhook_post_url, timeout_seconds=self.webhook_post_timeout_seconds)

    def webhook_client(self, deps: ClientDeps) -> WebhookClient:
        from integrations.webhook import WebhookClient

        return WebhookClient(self.webhook_config(), sleep=deps.sleep)
