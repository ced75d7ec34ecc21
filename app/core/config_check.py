"""`opsdesk config check`: per integration, what is configured, missing or malformed.

Secrets are reported as "set", never shown. The check fails (non-zero exit) when a value is
malformed or when an integration that is switched on (some of its settings given) lacks one it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from app.core.buffer_settings import BufferSettings
from app.core.credential_kinds import SUPABASE_KEY_NOTES, supabase_key_kind
from app.core.setting_values import is_loopback_host
from app.core.settings import Settings
from integrations.hubspot_tokens import HUBSPOT_TOKEN_NOTES, hubspot_token_kind

State = Literal["ok", "not configured", "incomplete", "malformed"]


@dataclass(frozen=True)
class Part:
    name: str
    fields: tuple[str, ...]
    required: tuple[str, ...] = ()  # needed once the part is switched on
    always_on: bool = False


PARTS: tuple[Part, ...] = (
    Part(
        "service",
        (
            "opsdesk_env",
            "opsdesk_host",
            "opsdesk_port",
            "public_base_url",
            "ops_api_token",
            "approval_link_secret",
            "approval_link_old_secrets",
            "max_request_bytes",
            "log_level",
            "api_docs",
            "http_keep_alive_seconds",
            "http_max_concurrency",
        ),
        required=("ops_api_token", "approval_link_secret"),
        always_on=True,
    ),
    Part("approval links", ("approval_pin", "approval_pin_max_tries", "inbox_link_hours"), always_on=True),
    Part(
        "database",
        (
            "database_url",
            "supabase_url",
            "supabase_service_role_key",
            "opsdesk_data_dir",
            "db_pool_max",
            "db_timeout_seconds",
        ),
        always_on=True,
    ),
    Part(
        "schedule",
        (
            "cron_timezone",
            "report_cron",
            "report_grace_hours",
            "sales_agent_cron",
            "support_agent_cron",
            "marketing_agent_cron",
            "agent_grace_minutes",
            "job_runs_retention_days",
        ),
        always_on=True,
    ),
    # the agents also need the anthropic and hubspot parts (and brevo/notion for what they draft)
    Part(
        "agents",
        (
            "brand_voice",
            "agent_email_min_tier",
            "agent_max_sources",
            "agent_max_output_tokens",
            "sales_stale_days",
            "sales_new_contact_days",
            "support_memory_results",
            "marketing_topic_days",
            "newsletter_max_recipients",
        ),
        always_on=True,
    ),
    Part(
        "risk policy",
        (
            "risk_recipients_medium",
            "risk_recipients_high",
            "risk_money_medium",
            "risk_money_high",
            "risk_money_critical",
            "auto_run_low",
            "approval_ttl_hours_medium",
            "approval_ttl_hours_high",
            "approval_ttl_hours_critical",
        ),
        always_on=True,
    ),
    Part(
        "executor",
        (
            "executor_lease_seconds",
            "executor_max_attempts",
            "executor_poll_seconds",
            "executor_batch_size",
            "executor_backoff_base_seconds",
            "executor_backoff_max_seconds",
            "webhook_post_url",
            "webhook_post_timeout_seconds",
        ),
        always_on=True,
    ),
    Part(
        "anthropic",
        (
            "anthropic_api_key",
            "anthropic_model",
            "anthropic_base_url",
            "anthropic_timeout_seconds",
            "anthropic_max_attempts",
            "anthropic_model_cache_hours",
            "anthropic_prompt_cache_ttl",
            "llm_daily_budget_usd",
            "llm_prices_json",
        ),
        required=("anthropic_api_key",),
    ),
    Part(
        "hubspot",
        (
            "hubspot_private_app_token",
            "hubspot_client_secret",
            "hubspot_base_url",
            "hubspot_timeout_seconds",
            "hubspot_requests_per_10s",
            "hubspot_searches_per_second",
            "hubspot_write_recheck_seconds",
        ),
        required=("hubspot_private_app_token",),
    ),
    Part(
        "brevo",
        (
            "brevo_api_key",
            "brevo_sender_email",
            "brevo_sender_name",
            "brevo_daily_limit",
            "brevo_batch_size",
            "brevo_transactional_reserve",
            "brevo_quota_timezone",
            "brevo_dry_run",
            "brevo_timeout_seconds",
            "brevo_send_hour",
            "brevo_resend_window_seconds",
            "brevo_base_url",
        ),
        required=("brevo_api_key", "brevo_sender_email"),
    ),
    Part(
        "notion",
        (
            "notion_api_key",
            "notion_blog_database_id",
            "notion_base_url",
            "notion_kb_database_id",
            "notion_timeout_seconds",
            "notion_max_attempts",
            "notion_create_recheck_seconds",
            "notion_title_property",
            "notion_tags_property",
            "notion_status_property",
            "notion_draft_status",
            "notion_id_property",
        ),
        required=("notion_api_key", "notion_blog_database_id"),
    ),
    Part(
        "discord",
        (
            "discord_webhook_url",
            "discord_escalation_role_id",
            "discord_timeout_seconds",
            "discord_poll_seconds",
            "discord_batch_size",
            "discord_max_attempts",
            "discord_backoff_base_seconds",
            "discord_backoff_max_seconds",
            "approval_reminder_hours",
            "escalate_before_expiry_hours",
        ),
        required=("discord_webhook_url",),
    ),
    Part("buffer", tuple(BufferSettings.model_fields)),
    # the provider validator requires VOYAGE_API_KEY / OPENAI_API_KEY for the provider chosen
    Part(
        "memory",
        (
            "embeddings_provider",
            "embeddings_model",
            "embeddings_dimension",
            "embeddings_batch_size",
            "embeddings_max_chars",
            "embeddings_timeout_seconds",
            "embeddings_query_timeout_seconds",
            "voyage_api_key",
            "voyage_base_url",
            "openai_api_key",
            "openai_base_url",
            "memory_search_candidates",
            "memory_rrf_k",
            "memory_fts_weight",
            "memory_vector_weight",
            "memory_hnsw_ef_search",
            "memory_fts_rank_limit",
            "memory_embed_interval_seconds",
            "memory_vector_index_kinds",
            "memory_retention_days",
            "audit_retention_days",
            "memory_archive_dir",
        ),
        always_on=True,
    ),
)

_RISK_FIELDS = next(part.fields for part in PARTS if part.name == "risk policy")


@dataclass
class Row:
    setting: str
    state: str
    note: str = ""


@dataclass
class PartReport:
    name: str
    state: State
    rows: list[Row] = field(default_factory=list)


@dataclass
class ConfigReport:
    parts: list[PartReport]
    settings: Settings

    @property
    def ok(self) -> bool:
        return all(part.state in ("ok", "not configured") for part in self.parts)


def _load(overrides: Mapping[str, Any]) -> tuple[Settings, dict[str, str]]:
    """Settings with every malformed value replaced by its default, plus what was wrong."""
    problems: dict[str, str] = {}
    try:
        return Settings(**overrides), problems
    except ValidationError as exc:
        defaults: dict[str, Any] = dict(overrides)
        for error in exc.errors(include_url=False):
            name = str(error["loc"][0]) if error["loc"] else None
            message = str(error["msg"]).removeprefix("Value error, ")
            if name is None:  # a rule across fields: the risk thresholds
                for risk_field in _RISK_FIELDS:
                    problems.setdefault(risk_field, message)
                    defaults[risk_field] = Settings.model_fields[risk_field].default
            else:
                problems[name] = message
                defaults[name] = Settings.model_fields[name].default
        return Settings(**defaults), problems


def _is_set(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value)
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return value not in (None, "")


def _shown(name: str, value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value)} set"
    # what a credential looks like, from its shape: never the value
    if name == "hubspot_private_app_token":
        return f"looks like {HUBSPOT_TOKEN_NOTES[hubspot_token_kind(value.get_secret_value())]}"
    if name == "supabase_service_role_key":
        return f"looks like {SUPABASE_KEY_NOTES[supabase_key_kind(value.get_secret_value())]}"
    if isinstance(value, SecretStr) or name == "database_url":
        return "set"
    return f"{value}"


def check(**overrides: Any) -> ConfigReport:
    """Build the report from the environment and `.env` (and `overrides`, for tests)."""
    settings, problems = _load(overrides)
    # the embedded default makes its own API token and link secret (app.core.local_secrets)
    generated = {"ops_api_token", "approval_link_secret"} if settings.database_mode == "embedded" else set()
    given = {name for name in Settings.model_fields if name in settings.model_fields_set}
    parts = []
    for part in PARTS:
        rows: list[Row] = []
        switched_on = (
            part.always_on
            or any(name in given and _is_set(getattr(settings, name)) for name in part.fields)
            or any(name in problems for name in part.fields)
        )
        state: State = "ok" if switched_on else "not configured"
        for name in part.fields:
            value = getattr(settings, name)
            env = name.upper()
            if name in problems:
                rows.append(Row(env, "malformed", problems[name]))
                state = "malformed"
            elif name in generated and not _is_set(value):
                rows.append(Row(env, "generated", "kept in <data dir>/secrets.env (embedded mode)"))
            elif name in part.required and not _is_set(value):
                rows.append(Row(env, "missing", "required" if switched_on else ""))
                if switched_on and state == "ok":
                    state = "incomplete"
            elif _is_set(value):
                rows.append(Row(env, "set" if name in given else "default", _shown(name, value)))
            else:
                rows.append(Row(env, "unset", ""))
        parts.append(PartReport(part.name, state, rows))
    _warn_plain_http(settings, next(p for p in parts if p.name == "service"))
    database = next(p for p in parts if p.name == "database")
    if settings.supabase_url and settings.supabase_service_role_key is None and "supabase_url" not in problems:
        database.state = "incomplete"
        database.rows.append(Row("SUPABASE_SERVICE_ROLE_KEY", "missing", "SUPABASE_URL needs it"))
    database.rows.append(Row("(mode)", settings.database_mode, _mode_note(settings)))
    hubspot = next(p for p in parts if p.name == "hubspot")
    if settings.hubspot_private_app_token is not None:
        webhooks = "on" if settings.hubspot_client_secret else "off"
        hubspot.rows.append(Row("(webhooks)", webhooks, _webhooks_note(settings)))
    _buffer_auth(settings, next(p for p in parts if p.name == "buffer"))
    return ConfigReport(parts, settings)


def _buffer_auth(settings: Settings, buffer: PartReport) -> None:
    if buffer.state == "not configured":
        return
    problem = settings.buffer_auth_problem()
    buffer.rows.append(
        Row("(auth)", "missing" if problem else settings.buffer_auth or "none", problem or settings.buffer_auth_note())
    )
    if (problem or settings.buffer_auth is None) and buffer.state == "ok":
        buffer.state = "incomplete"


def _webhooks_note(settings: Settings) -> str:
    if settings.hubspot_client_secret:
        return "signed with HUBSPOT_CLIENT_SECRET (v3); service keys cannot receive webhooks, apps can"
    return (
        "set HUBSPOT_CLIENT_SECRET to receive them: the client secret of a project-based app (or of a "
        "legacy private app); a service key receives no webhooks"
    )


def _warn_plain_http(settings: Settings, service: PartReport) -> None:
    """A warning, not a failure: a production PUBLIC_BASE_URL on plain http sends every signed
    link's token and the reviewer cookie in clear (loopback is the one exception: nothing leaves)."""
    url = urlsplit(settings.public_base_url)
    if settings.opsdesk_env == "production" and url.scheme == "http" and not is_loopback_host(url.hostname):
        service.rows.append(
            Row(
                "PUBLIC_BASE_URL",
                "warning",
                "plain http in production: approval links' tokens "
                "and the reviewer cookie travel in clear; serve opsdesk over https",
            )
        )


def _mode_note(settings: Settings) -> str:
    if settings.database_mode == "embedded":
        return f"embedded PostgreSQL in {settings.data_dir / 'pgdata'}"
    if settings.database_mode == "supabase":
        return "Supabase REST API (rpc)"
    return "direct PostgreSQL (DATABASE_URL)"
