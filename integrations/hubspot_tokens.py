"""What kind of HubSpot token a value looks like, read from its shape only.

HubSpot documents no token prefix (FACTS-2026-12.md §5). A UUID is a legacy API key (hapikey,
retired in 2022); `pat-<region>-…` is how legacy private-app tokens look, and how HubSpot's
service-key guide shows its example key; anything else is taken as an app's access token (a
project-based app's static token, or OAuth). The client refuses the legacy key; the app's settings
and `opsdesk config check` say what they see, never the value.
"""

from __future__ import annotations

import re
from typing import Literal

HubspotTokenKind = Literal["legacy_api_key", "private_app_or_service_key", "app_token"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_PAT = re.compile(r"^pat-[a-z]{2,3}\d+-", re.I)

HUBSPOT_TOKEN_NOTES: dict[HubspotTokenKind, str] = {
    "legacy_api_key": "a legacy API key (hapikey), which HubSpot no longer accepts",
    "private_app_or_service_key": "a legacy private app's token or a service key (pat-<region>-…)",
    "app_token": "an app's access token (a project-based app's static token, or OAuth)",
}


def hubspot_token_kind(token: str) -> HubspotTokenKind:
    if _UUID.match(token):
        return "legacy_api_key"
    if _PAT.match(token):
        return "private_app_or_service_key"
    return "app_token"
