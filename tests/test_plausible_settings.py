"""Plausible's settings part (app/core/settings/plausible.py) where operators look: `opsdesk config
check` (both settings or neither, a malformed URL, cloud or self-hosted), `/healthz`, and the typed
config and client it builds."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.clients import Clients
from app.core.config_check import PartReport, check
from app.core.database import Database
from app.core.settings import Settings
from app.web import create_app
from integrations.errors import NotConfigured
from integrations.plausible import DEFAULT_BASE_URL, PlausibleClient
from tests.conftest import make_settings
from tests.live_server import serve

KEY = "plausible-key-0123456789abcdefghijklmnopqrstuvwxyz"


def plausible_part(**settings: object) -> PartReport:
    return next(part for part in check(_env_file=None, **settings).parts if part.name == "plausible")


def rows(part: PartReport) -> dict[str, tuple[str, str]]:
    return {row.setting: (row.state, row.note) for row in part.rows}


def test_config_check_has_a_plausible_part() -> None:
    assert plausible_part().state == "not configured"

    half = plausible_part(plausible_api_key=KEY)
    assert half.state == "incomplete" and rows(half)["PLAUSIBLE_SITE_ID"] == ("missing", "required")
    assert rows(half)["PLAUSIBLE_API_KEY"] == ("set", "set")  # never the key itself

    cloud = plausible_part(plausible_api_key=KEY, plausible_site_id="example.com")
    assert cloud.state == "ok" and rows(cloud)["PLAUSIBLE_BASE_URL"] == ("unset", "")  # plausible.io
    assert rows(cloud)["PLAUSIBLE_TIMEOUT_SECONDS"] == ("default", "10.0")

    hosted = plausible_part(
        plausible_api_key=KEY, plausible_site_id="example.com", plausible_base_url="https://stats.example.com"
    )
    assert rows(hosted)["PLAUSIBLE_BASE_URL"] == ("set", "https://stats.example.com")

    malformed = plausible_part(plausible_api_key=KEY, plausible_site_id="example.com", plausible_base_url="stats")
    assert malformed.state == "malformed" and rows(malformed)["PLAUSIBLE_BASE_URL"][0] == "malformed"
    assert plausible_part(plausible_api_key="changeme", plausible_site_id="example.com").state == "malformed"


def test_the_client_is_built_only_from_both_settings() -> None:
    with pytest.raises(NotConfigured, match="PLAUSIBLE_API_KEY and PLAUSIBLE_SITE_ID"):
        make_settings(plausible_api_key=KEY).plausible_config()
    config = make_settings(plausible_api_key=KEY, plausible_site_id="example.com").plausible_config()
    assert (config.base_url, config.site_id, config.timeout_seconds) == (DEFAULT_BASE_URL, "example.com", 10.0)
    clients = Clients(make_settings(plausible_api_key=KEY, plausible_site_id="example.com"))
    try:
        client = clients.get(Settings.plausible_client)
        assert isinstance(client, PlausibleClient) and clients.get(Settings.plausible_client) is client
    finally:
        clients.close()
    with pytest.raises(NotConfigured):
        Clients(make_settings()).get(Settings.plausible_client)


def test_healthz_says_whether_plausible_is_configured(db: Database, database_url: str, tmp_path: Path) -> None:
    for extra, shown in (
        ({}, "not_configured"),
        ({"plausible_api_key": KEY, "plausible_site_id": "x.com"}, "configured"),
    ):
        settings = make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, **extra)
        with serve(create_app(settings, db)) as url:
            assert httpx.get(f"{url}/healthz", timeout=30).json()["integrations"]["plausible"] == shown
