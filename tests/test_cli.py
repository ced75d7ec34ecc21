"""The opsdesk CLI, run in-process against the test database: config check, actions, approvals."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.cli_support import clean_env, run


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    return clean_env(monkeypatch, tmp_path)


def test_config_check_passes_on_a_fresh_machine(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("config", "check") == 0
    out = capsys.readouterr().out
    assert "embedded PostgreSQL" in out and "generated" in out and "configuration ok" in out


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HUBSPOT_PRIVATE_APP_TOKEN", "0a1b2c3d-1111-2222-3333-444455556666", "legacy HubSpot API key"),
        ("HUBSPOT_PRIVATE_APP_TOKEN", "two words", "not a bearer token"),
        ("DISCORD_WEBHOOK_URL", "https://discord.com/channels/123/456", "not a Discord webhook URL"),
        ("DISCORD_WEBHOOK_URL", "https://evil.example/api/webhooks/1/abc", "not a Discord webhook URL"),
        ("CRON_TIMEZONE", "America/Phoenixx", "unknown time zone"),
        ("BREVO_DAILY_LIMIT", "0", "greater than 0"),
        ("BREVO_DAILY_LIMIT", "three hundred", "valid integer"),
        ("OPS_API_TOKEN", "changeme", "placeholder"),
        ("RISK_MONEY_HIGH", "5", "must rise"),
    ],
)
def test_config_check_reports_malformed_values(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str, message: str
) -> None:
    env.setenv(name, value)
    assert run("config", "check") == 1
    captured = capsys.readouterr()
    assert name in captured.out and "malformed" in captured.out and message in captured.out
    assert "configuration check failed" in captured.err


def test_config_check_needs_what_an_enabled_integration_requires(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("NOTION_API_KEY", "ntn_0123456789abcdef")
    assert run("config", "check") == 1
    out = capsys.readouterr().out
    assert "notion: incomplete" in out and "NOTION_BLOG_DATABASE_ID" in out


def test_config_check_never_prints_a_secret(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-api03-very-secret-value",
        "BREVO_API_KEY": "xkeysib-very-secret-value",
        "HUBSPOT_PRIVATE_APP_TOKEN": "pat-na1-0123abcd-4567-89ab-cdef-0123456789ab",
        "HUBSPOT_CLIENT_SECRET": "hubspot-client-secret-value",
        "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/123456/very-secret-webhook-token",
        "OPS_API_TOKEN": "an-api-token-that-is-long",
        "DATABASE_URL": "postgresql://postgres:hunter2-password@127.0.0.1:1/postgres",
    }
    for name, value in secrets.items():
        env.setenv(name, value)
    run("config", "check")
    captured = capsys.readouterr()
    for value in (*secrets.values(), "hunter2"):
        assert value not in captured.out + captured.err


@pytest.fixture
def cli_db(env: pytest.MonkeyPatch, database_url: str) -> str:
    env.setenv("DATABASE_URL", database_url)
    env.setenv("OPS_API_TOKEN", "cli-test-token-0123456789")
    env.setenv("APPROVAL_LINK_SECRET", "cli-test-link-secret-0123")
    return database_url


def submit(tmp_path: Path, capsys: pytest.CaptureFixture[str], recipients: int = 120) -> str:
    action = {
        "agent": "ops",
        "kind": "note.record",
        "summary": "Log it",
        "payload": {"body": "draft"},
        "impact": {"recipients": recipients},
    }
    path = tmp_path / "action.json"
    path.write_text(json.dumps(action))
    assert run("actions", "submit", str(path)) == 0
    return json.loads(capsys.readouterr().out)["id"]


def test_submit_list_approve_with_edit_and_show(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: psycopg.Connection
) -> None:
    action_id = submit(tmp_path, capsys)
    assert run("approvals", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [item["id"] for item in listed["items"]] == [action_id]
    assert run("approvals", "approve", action_id, "--as", "ann", "--edit", "body=final text") == 0
    assert "modified" in capsys.readouterr().out
    assert run("approvals", "show", action_id) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["decided_by"] == "cli:ann" and shown["requested_action"]["body"] == "final text"
    assert [row["event"] for row in shown["audit"]] == ["submitted", "decided"]
    assert run("executor", "drain") == 0
    assert sql.execute("select status from actions").fetchone() == ("succeeded",)


def test_reject_needs_a_reason_and_a_second_decision_conflicts(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    action_id = submit(tmp_path, capsys)
    assert run("approvals", "reject", action_id, "--reason", " ") == 4
    assert "a rejection needs a reason" in capsys.readouterr().err
    assert run("approvals", "reject", action_id, "--reason", "wrong tone", "--as", "ann") == 0
    capsys.readouterr()
    assert run("approvals", "approve", action_id) == 7
    assert "decided by cli:ann" in capsys.readouterr().err


def test_approving_critical_from_the_terminal_needs_the_pin_even_once_links_are_locked(
    cli_db: str,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sql: psycopg.Connection,
) -> None:
    env.setenv("APPROVAL_PIN", "4321")
    env.setenv("APPROVAL_PIN_MAX_TRIES", "2")
    action = {
        "agent": "ops",
        "kind": "note.record",
        "summary": "Pay it",
        "payload": {"body": "draft"},
        "impact": {"cost_usd": 500},
    }
    (tmp_path / "critical.json").write_text(json.dumps(action))
    assert run("actions", "submit", str(tmp_path / "critical.json")) == 0
    action_id = json.loads(capsys.readouterr().out)["id"]
    assert run("approvals", "approve", action_id, "--as", "ann") == 5  # no PIN given
    assert run("approvals", "approve", action_id, "--as", "ann", "--pin", "0000") == 5
    assert "approval PIN" in capsys.readouterr().err
    # two wrong tries: approval by link (and API) is locked; the terminal, as the page says, still works
    assert sql.execute("select failures from approval_pin_failures").fetchone() == (2,)
    assert run("approvals", "approve", action_id, "--as", "ann", "--pin", "4321") == 0
    row = sql.execute("select status, decided_by from actions where id = %s", (action_id,)).fetchone()
    assert row == ("approved", "cli:ann")
    assert [
        event for (event,) in sql.execute("select event from audit_log where action_id = %s order by id", (action_id,))
    ] == ["submitted", "pin_failed", "pin_failed", "pin_locked", "decided"]


def test_submit_refuses_a_bad_file_and_writes_nothing(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: psycopg.Connection
) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"agent": "ops", "kind": "note.record"')
    assert run("actions", "submit", str(path)) == 4
    assert "does not fit the schema" in capsys.readouterr().err
    path.write_text(json.dumps({"agent": "ops", "kind": "nope", "summary": "x", "payload": {}}))
    assert run("actions", "submit", str(path)) == 4
    assert "unknown action kind" in capsys.readouterr().err
    assert sql.execute("select count(*) from actions").fetchone() == (0,)


def test_a_database_that_lacks_the_schema_is_named(
    env: pytest.MonkeyPatch, pg_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("DATABASE_URL", pg_server.get_uri())  # type: ignore[attr-defined]
    env.setenv("OPS_API_TOKEN", "cli-test-token-0123456789")
    env.setenv("APPROVAL_LINK_SECRET", "cli-test-link-secret-0123")
    assert run("approvals", "list") == 3
    assert "opsdesk db init" in capsys.readouterr().err
