"""Missing configuration is said first, and alone: which settings, and where to set them.

`opsdesk agents run NAME` checks what the agent needs (app.agent_runs.registry.AgentEntry.needs,
derived from the agent: where it reads its sources, and Claude) before it starts anything, for every
agent of the registry; every integration's own NotConfigured ends with where to set it. The
declaration is checked against the agents' behaviour: a missing system it reads fails the run, and
one it does not need fails nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agents import REGISTRY
from app.agent_runs.registry import AgentEntry
from app.core.config_needs import HOW_TO_SET
from app.core.database import Database
from app.core.settings import Settings
from app.core.settings import parts as settings_parts
from tests.agent_world import World, agent_world
from tests.fake_hubspot import FakeHubSpot

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {part.part: part.required for part in settings_parts() if part.required}
INTEGRATIONS = ("anthropic", "hubspot", "brevo", "notion", "discord")


def opsdesk(
    tmp_path: Path, *args: str, data_dir: Path | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: a fresh machine's environment plus `settings`."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env |= {"OPSDESK_DATA_DIR": str(data_dir or tmp_path / "data"), "PYTHONPATH": str(ROOT), **settings}
    argv = [sys.executable, "-c", "from scheduler import main; main()", *args]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("entry", REGISTRY.entries, ids=lambda entry: entry.name)
def test_an_agent_run_without_its_integrations_says_only_what_is_missing(tmp_path: Path, entry: AgentEntry) -> None:
    name, needs = entry.name, entry.needs
    done = opsdesk(tmp_path, "agents", "run", name, "--dry-run")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""  # no results table, no log: the one message
    assert done.stderr.startswith(f"config_error: `opsdesk agents run {name}` needs ")
    for system in needs:
        assert f"{system}: set " + ", ".join(field.upper() for field in REQUIRED[system]) in done.stderr
    assert HOW_TO_SET in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == len(needs) + 2
    assert not (tmp_path / "data" / "pgdata").exists(), "no database was started"


def test_only_what_is_still_missing_is_named(tmp_path: Path) -> None:
    done = opsdesk(tmp_path, "agents", "run", "sales", "--dry-run", HUBSPOT_PRIVATE_APP_TOKEN="pat-na1-0123")
    assert done.returncode == 2 and done.stdout == ""
    assert "anthropic: set ANTHROPIC_API_KEY" in done.stderr and "HUBSPOT" not in done.stderr


def test_an_integration_found_unconfigured_says_where_to_set_it(tmp_path: Path, embedded_dir: Path) -> None:
    done = opsdesk(tmp_path, "models", "check", data_dir=embedded_dir)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "config_error: anthropic: ANTHROPIC_API_KEY is not set"
    assert HOW_TO_SET in " ".join(" ".join(lines[1:]).split()) and "Traceback" not in done.stderr


@pytest.fixture
def world(db: Database, database_url: str, sql: psycopg.Connection, tmp_path: Path) -> Iterator[World]:
    with agent_world(db, database_url, sql, tmp_path) as made:
        yield made


def _unset(*systems: str) -> dict[str, None]:
    return {field: None for system in systems for field in REQUIRED[system]}


@pytest.mark.parametrize("entry", REGISTRY.entries, ids=lambda entry: entry.name)
def test_what_an_agent_says_it_needs_is_what_its_run_needs(world: World, entry: AgentEntry) -> None:
    name, needs = entry.name, entry.needs
    # nothing it does not declare is needed: a dry run with only its needs configured goes through
    world.answer({"proposals": []})
    report = world.run(name, dry_run=True, **_unset(*(system for system in INTEGRATIONS if system not in needs)))
    assert report.outcome == "ok", report.error
    # and each system it reads is needed: without it the run fails, naming it
    for system in (system for system in needs if system != "anthropic"):
        failed = world.run(name, dry_run=True, **_unset(system))
        assert failed.outcome == "failed" and (failed.error or "").startswith(f"{system}: "), failed.error


def test_a_run_that_fails_says_why_without_an_empty_table(tmp_path: Path, embedded_dir: Path) -> None:
    """Configured, but HubSpot refuses the token: the failure alone, nothing listed before it."""
    with FakeHubSpot() as hubspot:
        done = opsdesk(
            tmp_path,
            "agents",
            "run",
            "sales",
            "--dry-run",
            HUBSPOT_PRIVATE_APP_TOKEN="pat-na1-refused-by-the-fake",
            HUBSPOT_BASE_URL=hubspot.url,
            ANTHROPIC_API_KEY="sk-ant-never-called",
            data_dir=embedded_dir,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    # the answer is its last line; the log line before it is what the service's log would show
    assert done.stderr.splitlines()[-1].startswith("the run failed: hubspot: "), done.stderr
    assert "action(s)" not in done.stderr and "Traceback" not in done.stderr
