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

from app.core.credential_kinds import SUPABASE_KEY_NOTES, supabase_key_kind
from app.core.setting_values import is_loopback_host
from app.core.settings import Settings
from app.core.settings import parts as settings_parts
from integrations.hubspot_tokens import HUBSPOT_TOKEN_NOTES, hubspot_token_kind

State = Literal["ok", "not configured", "incomplete", "malformed"]


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


def _load(settings_class: type[Settings], overrides: Mapping[str, Any]) -> tuple[Settings, dict[str, str]]:
    """Settings with every malformed value replaced by its default, plus what was wrong. A rule
    across settings is checked only once each setting is valid, so this goes round until none fails."""
    problems: dict[str, str] = {}
    given: dict[str, Any] = dict(overrides)
    while True:
        try:
            return settings_class(**given), problems
        except ValidationError as exc:
            found = _problems(exc)
            if not found.keys() - problems.keys():  # nothing left to fall back from
                raise
            for name, message in found.items():
                problems.setdefault(name, message)
                given[name] = settings_class.model_fields[name].get_default(call_default_factory=True)


def _problems(exc: ValidationError) -> dict[str, str]:
    """Each setting a validation error names, with its message. A rule across settings has no
    location: it names its settings in its context (app.core.settings.part.rule_broken)."""
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        names = [str(error["loc"][0])] if error["loc"] else list(error.get("ctx", {}).get("settings", ()))
        for name in names:
            found.setdefault(name, message)
    return found


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


def check(settings_class: type[Settings] = Settings, **overrides: Any) -> ConfigReport:
    """Build the report from the environment and `.env` (and `overrides`, for tests): one section
    per settings part of `settings_class` (app.core.settings.parts), in its order."""
    settings, problems = _load(settings_class, overrides)
    # the embedded default makes its own API token and link secret (app.core.local_secrets)
    generated = {"ops_api_token", "approval_link_secret"} if settings.database_mode == "embedded" else set()
    given = {name for name in settings_class.model_fields if name in settings.model_fields_set}
    parts = []
    for part in settings_parts(settings_class):
        rows: list[Row] = []
        fields = tuple(part.model_fields)
        switched_on = (
            part.always_on
            or any(name in given and _is_set(getattr(settings, name)) for name in fields)
            or any(name in problems for name in fields)
        )
        state: State = "ok" if switched_on else "not configured"
        for name in fields:
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
        parts.append(PartReport(part.part, state, rows))
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
    return ConfigReport(parts, settings)


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
