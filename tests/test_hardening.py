"""Issue 12, "also harden": what the service tells and serves in production. config check warns on
a plain-http PUBLIC_BASE_URL in production; /docs (Swagger UI from a CDN, on the approval pages'
origin) is off in production unless API_DOCS asks; uvicorn gets opsdesk's limits."""

from __future__ import annotations

import httpx
import pytest

from app.core.config_check import check
from app.core.database import Database
from app.runtime.service import server_config
from app.web import create_app
from tests.conftest import make_settings
from tests.live_server import serve


def warnings_of(**settings: object) -> list[str]:
    report = check(
        _env_file=None,
        ops_api_token="prod-api-token-0123456789",
        approval_link_secret="prod-link-secret-0123456789",
        **settings,
    )
    assert report.ok  # a warning never fails the check
    return [row.note for part in report.parts for row in part.rows if row.state == "warning"]


def test_config_check_warns_on_plain_http_in_production() -> None:
    [warning] = warnings_of(opsdesk_env="production", public_base_url="http://ops.example.com")
    assert "plain http in production" in warning and "in clear" in warning
    assert warnings_of(opsdesk_env="production", public_base_url="https://ops.example.com") == []
    assert warnings_of(opsdesk_env="production", public_base_url="http://127.0.0.1:8000") == []
    assert warnings_of(opsdesk_env="development", public_base_url="http://ops.example.com") == []


@pytest.mark.parametrize(
    ("env", "api_docs", "served"),
    [
        ("production", None, False),
        ("production", True, True),
        ("development", None, True),
        ("development", False, False),
    ],
)
def test_docs_load_no_cdn_script_in_production_unless_asked(
    database_url: str, db: Database, env: str, api_docs: bool | None, served: bool
) -> None:
    settings = make_settings(database_url=database_url, opsdesk_env=env, api_docs=api_docs)
    with serve(create_app(settings, db)) as url:
        docs = httpx.get(f"{url}/docs", timeout=30)
        assert httpx.get(f"{url}/openapi.json", timeout=30).status_code == 200
    assert docs.status_code == (200 if served else 404)
    assert ("cdn.jsdelivr.net" in docs.text) is served


def test_uvicorn_gets_the_limits_from_the_settings() -> None:
    settings = make_settings(http_keep_alive_seconds=3, http_max_concurrency=40)
    config = server_config(settings, object(), host="127.0.0.1", port=8000)
    assert (config.timeout_keep_alive, config.limit_concurrency, config.server_header) == (3, 40, False)
    default = server_config(make_settings(), object(), host="127.0.0.1", port=8000)
    assert (default.timeout_keep_alive, default.limit_concurrency) == (5, 100)
