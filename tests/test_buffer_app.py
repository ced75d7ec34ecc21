"""Buffer from the owner's side: `opsdesk buffer connect | channels | status` against the fake
Buffer, `opsdesk config check`'s Buffer lines, and "reconnect needed" reaching the owner on Discord
(once) and in the daily report (every day until fixed)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

import app.cli.buffer as buffer_cli
from app.clients.buffer import reconnect_alert, token_store
from app.core.database import Database
from app.reports.build import DailyReports
from app.reports.delivery import report_message
from app.reports.page import render_page
from integrations.buffer_oauth import TokenPair
from tests.cli_support import clean_env, database_env, run
from tests.conftest import advance_clock, make_settings
from tests.fake_buffer import API_KEY, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, FakeBuffer
from tests.fake_discord import FakeDiscord

KEY = Fernet.generate_key().decode()


@pytest.fixture
def buffer() -> Iterator[FakeBuffer]:
    with FakeBuffer() as fake:
        yield fake
    assert fake.internal_errors == []


@pytest.fixture
def oauth_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, buffer: FakeBuffer
) -> pytest.MonkeyPatch:
    env = database_env(monkeypatch, tmp_path, database_url)
    for name, value in {
        "BUFFER_CLIENT_ID": CLIENT_ID,
        "BUFFER_CLIENT_SECRET": CLIENT_SECRET,
        "BUFFER_REDIRECT_URI": REDIRECT_URI,
        "BUFFER_TOKEN_KEY": KEY,
        "BUFFER_API_URL": buffer.api_url,
        "BUFFER_AUTH_URL": buffer.auth_url,
    }.items():
        env.setenv(name, value)
    return env


def follow_the_link(capsys: pytest.CaptureFixture[str], answer: str = "address") -> object:
    """The person: opens the printed link (the fake approves at once) and pastes where it lands."""

    def ask(_: str) -> str:
        link = re.search(r"http://127\.0\.0\.1:\d+/auth\?\S+", capsys.readouterr().out)
        assert link is not None
        landed = httpx.get(link.group(0)).headers["Location"]
        return landed if answer == "address" else landed.replace("state=", "state=forged")

    return ask


def test_connect_stores_the_grant_encrypted_and_lists_the_channels(
    oauth_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    buffer: FakeBuffer,
    sql: psycopg.Connection,
) -> None:
    oauth_env.setattr(buffer_cli, "ask", follow_the_link(capsys))
    assert run("buffer", "connect") == 0
    assert "Buffer connected: 4 channels" in capsys.readouterr().out
    [(sealed,)] = sql.execute("select access_token_enc from buffer_grants").fetchall()
    [token] = buffer.oauth.access_tokens
    assert token not in sealed
    assert run("buffer", "channels", "--json") == 0
    channels = json.loads(capsys.readouterr().out)
    assert {c["service"]: c["text_limit"] for c in channels} == {
        "twitter": 280,
        "linkedin": 3000,
        "mastodon": 500,
        "bluesky": 300,
    }
    assert run("buffer", "status") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["auth"] == "oauth" and status["grant"]["status"] == "connected"
    assert token not in json.dumps(status) and "access_token_enc" not in status["grant"]


def test_connect_refuses_an_answer_to_another_link(
    oauth_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sql: psycopg.Connection
) -> None:
    oauth_env.setattr(buffer_cli, "ask", follow_the_link(capsys, answer="forged"))
    assert run("buffer", "connect") == 4
    assert "state differs" in capsys.readouterr().err
    assert sql.execute("select count(*) from buffer_grants").fetchone() == (0,)


def test_the_pasted_answer_may_be_the_bare_code_or_an_error() -> None:
    assert buffer_cli.code_from("  abc123 ", "s") == "abc123"
    with pytest.raises(Exception, match="access_denied"):
        buffer_cli.code_from("http://x/cb?error=access_denied&state=s", "s")


def test_channels_with_the_api_key(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    buffer: FakeBuffer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = database_env(monkeypatch, tmp_path, database_url)
    env.setenv("BUFFER_API_KEY", API_KEY)
    env.setenv("BUFFER_API_URL", buffer.api_url)
    buffer.channel("bluesky").is_locked = True
    assert run("buffer", "channels") == 0
    out = capsys.readouterr().out
    assert "LinkedIn" in out and "locked" in out and API_KEY not in out


@pytest.mark.parametrize(
    ("given", "state", "line"),
    [
        ({"BUFFER_API_KEY": "buf_0123456789"}, "buffer: ok", "BUFFER_API_KEY"),
        ({"BUFFER_CLIENT_ID": "app"}, "buffer: malformed", "BUFFER_CLIENT_ID needs BUFFER_TOKEN_KEY"),
        ({"BUFFER_CLIENT_ID": "app", "BUFFER_TOKEN_KEY": KEY}, "buffer: ok", "BUFFER_CLIENT_ID"),
        ({"BUFFER_TOKEN_KEY": "not-a-fernet-key"}, "buffer: malformed", "must be a Fernet key"),
        ({"BUFFER_API_URL": "ftp://x"}, "buffer: malformed", "must be an http(s) URL"),
    ],
)
def test_config_check_buffer_lines(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: dict[str, str],
    state: str,
    line: str,
) -> None:
    env = clean_env(monkeypatch, tmp_path)
    for name, value in given.items():
        env.setenv(name, value)
    code = run("config", "check")
    out = capsys.readouterr().out
    assert state in out and line in out and (code == 0) == state.endswith("ok")
    assert KEY not in out and "buf_0123456789" not in out


# --- reconnect needed reaches the owner ---------------------------------------------------------
@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    fake = FakeDiscord()
    fake.up()
    yield fake
    fake.down()


def test_reconnect_needed_is_told_on_discord_once_and_in_every_report(
    db: Database, sql: psycopg.Connection, database_url: str, discord: FakeDiscord
) -> None:
    settings = make_settings(
        database_url=database_url,
        buffer_client_id=CLIENT_ID,
        buffer_token_key=KEY,
        discord_webhook_url=discord.webhook_url,
    )
    store = token_store(db, settings)
    store.save(TokenPair(access_token=SecretStr("a"), refresh_token=SecretStr("r"), expires_in=3600))
    reports = DailyReports(db, settings)
    advance_clock(sql, 2 * 86_400)
    day = reports.yesterday()
    assert reports.build(day).connections == []
    store.reconnect_needed("invalid_grant: grant request is invalid")
    store.reconnect_needed("HTTP 401 again")
    [post] = discord.posts()
    assert "Buffer needs reconnecting" in json.dumps(post.body) and "opsdesk buffer connect" in json.dumps(post.body)
    report = reports.build(day)
    [notice] = report.connections
    assert notice.system == "Buffer" and notice.reason == "invalid_grant: grant request is invalid"
    assert "Buffer needs reconnecting" in report_message(report, with_chart=False).content
    page = render_page(report, None, b"")
    assert "Buffer needs reconnecting" in page and "opsdesk buffer connect" in page
    assert isinstance(day, date)


def test_the_alert_is_quiet_without_discord_and_survives_a_discord_failure(
    database_url: str, discord: FakeDiscord
) -> None:
    reconnect_alert(make_settings(database_url=database_url))("no Discord configured: nothing to do")
    discord.down()
    reconnect_alert(make_settings(database_url=database_url, discord_webhook_url=discord.webhook_url))("down")
