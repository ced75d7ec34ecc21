"""How a setting's value is read and checked: the functions Settings' validators call. Each takes
the value as given and returns it as kept (stripped, decoded, merged over defaults), or raises
ValueError saying what is wrong, which pydantic reports under the setting's name and
`opsdesk config check` shows in its report."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr

from app.core.credential_kinds import (
    SUPABASE_KEY_EXPECTED,
    SUPABASE_KEY_NOTES,
    supabase_key_kind,
    supabase_key_refused_up_front,
)
from app.core.cron import CronError, parse_crontab
from integrations.hubspot_tokens import hubspot_token_kind

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "xxx", "todo"}
_DISCORD_HOSTS = {"discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"}
_DISCORD_WEBHOOK_PATH = re.compile(r"^/api/(v\d+/)?webhooks/\d+/[\w-]+/?$")


def is_loopback_host(host: str | None) -> bool:
    return host in {"127.0.0.1", "localhost", "::1"} or (host or "").startswith("127.")


def http_url(value: str | None, *, field: str) -> str | None:
    if value in (None, ""):
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{field} must be an http(s) URL")
    return value.rstrip("/")


def known_time_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def crontab(value: str) -> str:
    try:
        parse_crontab(value, "UTC")
    except CronError as exc:
        raise ValueError(str(exc)) from exc
    return " ".join(value.split())


def email_address(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value.strip()):
        raise ValueError("is not an email address")
    return value.strip() if value else None


def hubspot_token(value: SecretStr | None) -> SecretStr | None:
    """Any bearer token but a legacy API key: HubSpot documents no prefix, and a new customer
    has a service key or a project-based app's token (app.core.credential_kinds)."""
    if value is None or not value.get_secret_value():
        return None
    token = value.get_secret_value().strip()
    if hubspot_token_kind(token) == "legacy_api_key":
        raise ValueError(
            "looks like a legacy HubSpot API key (hapikey), which HubSpot no longer accepts; "
            "use a service key, a project-based app's access token or a private-app token"
        )
    if not re.fullmatch(r"[\x21-\x7e]+", token):
        raise ValueError("is not a bearer token (it has spaces or characters a header cannot carry)")
    return SecretStr(token)


def supabase_key(value: SecretStr | None) -> SecretStr | None:
    if value is not None and supabase_key_refused_up_front(value.get_secret_value().strip()):
        kind = supabase_key_kind(value.get_secret_value().strip())
        raise ValueError(f"is {SUPABASE_KEY_NOTES[kind]}; {SUPABASE_KEY_EXPECTED}")
    return value


def discord_webhook(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value():
        return None
    parts = urlsplit(value.get_secret_value().strip())
    local = is_loopback_host(parts.hostname) and parts.scheme in {"http", "https"}
    discord = parts.scheme == "https" and parts.hostname in _DISCORD_HOSTS
    if not (local or discord) or not _DISCORD_WEBHOOK_PATH.match(parts.path):
        raise ValueError("is not a Discord webhook URL (https://discord.com/api/webhooks/<id>/<token>)")
    return value


def discord_role(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if not re.fullmatch(r"\d{17,20}", value.strip()):
        raise ValueError("is not a Discord role id (17-20 digits; Server Settings > Roles > Copy Role ID)")
    return value.strip()


def no_placeholder(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value().strip():
        return None
    if value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
        raise ValueError("is a placeholder; set a real secret")
    return value


def json_text(value: object) -> object:
    if isinstance(value, str):  # decoded here so bad JSON is a validation error config check reports
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ValueError(f"is not JSON: {exc}") from exc
    return value


def comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def retention_days(value: object, *, defaults: Mapping[str, int]) -> object:
    """`kind=days,...` (or a JSON object), merged over the defaults so setting one kind keeps
    the others (decisions' seven years above all)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"is not JSON: {exc}") from exc
        else:
            pairs = [part.partition("=") for part in text.split(",") if part.strip()]
            if any(not sep or not kind.strip() for kind, sep, _ in pairs):
                raise ValueError("takes kind=days pairs separated by commas, e.g. ticket=365,note=0")
            value = {kind.strip(): days.strip() for kind, _, days in pairs}
    if not isinstance(value, dict):
        raise ValueError("takes kind=days pairs separated by commas, e.g. ticket=365,note=0")
    if bad := [kind for kind in value if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", str(kind))]:
        raise ValueError(f"{bad[0]!r} is not a memory kind (lower-case letters, digits, _)")
    merged: dict[Any, Any] = {**defaults, **value}
    return merged


def memory_kinds(value: object) -> object:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and (
        bad := [kind for kind in value if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", str(kind))]
    ):
        raise ValueError(f"{bad[0]!r} is not a memory kind (lower-case letters, digits, _)")
    return value


def at_least(value: SecretStr | None, characters: int, *, strip: bool = False) -> SecretStr | None:
    if value is None:
        return None
    secret = value.get_secret_value()
    if len(secret.strip() if strip else secret) < characters:
        raise ValueError(f"must be at least {characters} characters")
    return value
