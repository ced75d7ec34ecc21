"""What kind of Supabase key a value looks like, read from its shape only.

Used by the settings validators (a key that can never work is refused up front), by
`opsdesk config check` (which says what it sees, never the value) and by error messages.
Supabase: `sb_secret_…` and `sb_publishable_…` (the new API keys), or the legacy JWT keys whose
payload names the Postgres role (`service_role`, `anon`). Source: Supabase's API keys guide.
HubSpot's tokens are the integration's knowledge: integrations.hubspot_tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Literal

SupabaseKeyKind = Literal["secret", "publishable", "service_role", "anon", "other_jwt", "unknown"]


SUPABASE_KEY_EXPECTED = (
    "SUPABASE_SERVICE_ROLE_KEY must be the project's secret key (sb_secret_…) or its "
    "legacy service_role key, not the publishable (sb_publishable_…) or anon key"
)

SUPABASE_KEY_NOTES: dict[SupabaseKeyKind, str] = {
    "secret": "a secret key (sb_secret_…)",
    "service_role": "a legacy service_role key (JWT)",
    "publishable": "the publishable key (sb_publishable_…): it only reaches what Row Level Security allows",
    "anon": "the legacy anon key (JWT): it only reaches what Row Level Security allows",
    "other_jwt": "a JWT for another role: only the service role may run opsdesk's functions",
    "unknown": "not a shape Supabase documents (sb_secret_… or a service_role JWT)",
}


def _jwt_role(key: str) -> str | None:
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    role = payload.get("role") if isinstance(payload, dict) else None
    return role if isinstance(role, str) else None


def supabase_key_kind(key: str) -> SupabaseKeyKind:
    if key.startswith("sb_secret_"):
        return "secret"
    if key.startswith("sb_publishable_"):
        return "publishable"
    role = _jwt_role(key)
    if role is None:
        return "unknown"
    return role if role in ("service_role", "anon") else "other_jwt"  # type: ignore[return-value]


def supabase_key_refused_up_front(key: str) -> bool:
    """Keys that can never run opsdesk's functions: the client-side ones."""
    return supabase_key_kind(key) in ("publishable", "anon", "other_jwt")
