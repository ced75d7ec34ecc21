"""A command line that answers at once (issue 15): `opsdesk --help` imports none of the heavy
modules (the database driver, the web stack, the settings, pydantic, the agents), and `opsdesk
approvals list` asks the running service instead of opening the database itself. Timings live in
bench/ (bench/compare.py, part `cli`), never here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import agents
from app.core.database import Database
from app.core.models import ActionRequest, Impact
from app.core.settings import Settings
from app.runtime import advert
from app.web import create_app
from tests.cli_support import database_env, run
from tests.live_server import serve
from tests.test_quickstart import ROOT

# What a command imports when it runs, never the command line itself
HEAVY = (
    "psycopg",
    "psycopg_pool",
    "pydantic_settings",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "apscheduler",
    "jinja2",
    "anthropic",
    "supabase",
    "matplotlib",
    "numpy",
    "agents.framework",
    "app.core.settings",
    "app.core.database",
    "app.core.models",
    "app.approvals.queue",
    "app.memory.store",
    "app.runtime.database",
)


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter has loaded after `opsdesk ARGV` (run in it, output dropped)."""
    code = (
        "import contextlib, io, json, sys\n"
        "from scheduler import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({list(argv)!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["approvals", "--help"], ["memory", "--help"], ["agents", "--help"]])
def test_help_imports_none_of_the_heavy_modules(argv: list[str]) -> None:
    loaded = imported_by(*argv)
    assert "typer" in loaded and "app.cli" in loaded  # it did build the command line
    assert sorted(name for name in HEAVY if name in loaded) == []
    if argv == ["--help"]:
        # nor pydantic (Typer itself loads it to show a command's options, so only at the top)
        assert "pydantic" not in loaded


def test_the_agents_entries_name_the_agents_classes() -> None:
    """The entries `--help` and the schedule read without importing the agents are theirs."""
    assert [(entry.name, entry.cron_setting, entry.needs) for entry in agents.ENTRIES] == [
        (agent.name, agent.cron_setting, agent.needs()) for agent in agents.agent_classes()
    ]
    assert all(entry.cron_setting in Settings.model_fields for entry in agents.ENTRIES)


@pytest.fixture
def listed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, db: Database, settings: Settings
) -> dict[str, Any]:
    """Three pending actions, listed by the CLI from the database (the reference answer)."""
    from app.approvals.queue import ApprovalQueue

    queue = ApprovalQueue(db, settings)
    for n in range(3):
        request = ActionRequest(
            agent="ops", kind="note.record", summary=f"note {n}", payload={"body": "x"}, impact=Impact(recipients=120)
        )
        queue.submit(request, actor="test")
    database_env(monkeypatch, tmp_path, database_url)
    return {"settings": Settings()}


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert run("approvals", "list", "--json", *argv) == 0
    return json.loads(capsys.readouterr().out)


def test_approvals_list_asks_the_running_service_on_its_database(
    listed: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db: Database
) -> None:
    settings: Settings = listed["settings"]
    from_database = cli_json(capsys)
    two_of_all = cli_json(capsys, "--all", "--limit", "2")
    assert from_database["total"] == 3 and len(two_of_all["items"]) == 2
    with serve(create_app(settings, db)) as url:
        port = int(url.rsplit(":", 1)[1])
        path = advert.advertise(settings, host="0.0.0.0", port=port)
        assert json.loads(path.read_text())["url"] == f"http://127.0.0.1:{port}"
        assert path.stat().st_mode & 0o777 == 0o600

        def no_database(**_: object) -> None:
            raise AssertionError("the CLI opened the database with the service running")

        with monkeypatch.context() as patched:
            patched.setattr("app.cli.approvals.database", no_database)
            assert cli_json(capsys) == from_database
            assert cli_json(capsys, "--all", "--limit", "2") == two_of_all
            assert run("approvals", "list") == 0
            assert "3 action(s)" in capsys.readouterr().out
    # the service gone (file still there): the CLI opens the database, as without one
    assert cli_json(capsys) == from_database
    advert.withdraw(path)
    assert not path.exists()


def test_approvals_list_ignores_a_service_file_it_cannot_trust(
    listed: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db: Database
) -> None:
    settings: Settings = listed["settings"]
    with serve(create_app(settings, db)) as url:
        port = int(url.rsplit(":", 1)[1])
        path = advert.advertise(settings, host="127.0.0.1", port=port)
        record = json.loads(path.read_text())
        assert advert.running_service(settings) == url
        # a dead process (a crashed service), and a service on another database
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        for changed in ({"pid": int(dead.stdout)}, {"database": "another database"}):
            path.write_text(json.dumps({**record, **changed}))
            assert advert.running_service(settings) is None
        # a service that refuses this token: the database answers
        path.write_text(json.dumps(record))
        monkeypatch.setenv("OPS_API_TOKEN", "some-other-token-0123456789")
        assert cli_json(capsys)["total"] == 3
    path.write_text(json.dumps({**record, "pid": os.getpid() + 1_000_000}))
    advert.withdraw(path)  # not this process's file: left alone
    assert path.exists()
