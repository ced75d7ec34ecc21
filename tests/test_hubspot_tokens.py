"""HubSpot tokens in 2026 (FACTS-2026-12.md §5): legacy private apps can no longer be created; a
new customer has a service key (no webhooks) or a project-based app's token (webhooks). HubSpot
documents no token prefix, so any bearer token is taken but a legacy API key, and `config check`
says which kind it looks like without refusing an unknown shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.clients import Clients
from app.core.database import Database
from app.core.settings import Settings
from tests.cli_support import clean_env, run
from tests.conftest import make_settings
from tests.fake_hubspot import FakeHubSpot

LEGACY_PRIVATE_APP = "pat-na1-0123abcd-4567-89ab-cdef-0123456789ab"
EU_PRIVATE_APP_OR_SERVICE_KEY = "pat-eu1-5f0e2c1a-93b4-4d6e-8a71-2c9e0b4d1f3a"
APP_TOKEN = "CJSP5qf1KhICAQEYs-gDIIGOBii1hQIyGQAf3xBKmlwHjX7OIpuIFEavB2-qYAGQsF4"  # HubSpot's docs' example
UNKNOWN_SHAPE = "hs-svc-7d1b0c54e2a94f0f9c3e8a6b5d4c3b2a"


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as server:
        yield server


@pytest.mark.parametrize("token", [LEGACY_PRIVATE_APP, EU_PRIVATE_APP_OR_SERVICE_KEY, APP_TOKEN, UNKNOWN_SHAPE])
def test_any_bearer_token_reaches_hubspot(token: str, fake: FakeHubSpot, db: Database) -> None:
    fake.tokens = {token}
    contact = fake.add("contacts", email="ana@example.com", firstname="Ana", lastname="Diaz")
    clients = Clients(make_settings(hubspot_private_app_token=f"  {token}\n", hubspot_base_url=fake.url), db)
    try:
        assert clients.get(Settings.hubspot_client).get_contact(contact).email == "ana@example.com"
    finally:
        clients.close()
    assert {request.headers["authorization"] for request in fake.requests} == {f"Bearer {token}"}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("0a1b2c3d-1111-2222-3333-444455556666", "legacy HubSpot API key"),
        ("pat-na1 with spaces", "not a bearer token"),
    ],
)
def test_only_a_legacy_api_key_or_a_non_token_is_refused(token: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(hubspot_private_app_token=token)


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        (LEGACY_PRIVATE_APP, "a legacy private app's token or a service key (pat-<region>-…)"),
        (APP_TOKEN, "an app's access token (a project-based app's static token, or OAuth)"),
        (UNKNOWN_SHAPE, "an app's access token"),
    ],
)
def test_config_check_says_which_kind_a_token_looks_like_and_what_webhooks_need(
    token: str,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("HUBSPOT_PRIVATE_APP_TOKEN", token)
    assert run("config", "check") == 0
    out = capsys.readouterr().out
    assert f"looks like {kind}" in out and token not in out
    assert "(webhooks)" in out and "a service key receives no webhooks" in out
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "an-app-client-secret-value")
    assert run("config", "check") == 0
    out = capsys.readouterr().out
    assert "signed with HUBSPOT_CLIENT_SECRET (v3)" in out and "an-app-client-secret-value" not in out
