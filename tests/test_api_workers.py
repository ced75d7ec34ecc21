"""`opsdesk run --api-workers N`: the HTTP API in several processes on one port, and the decision
endpoint's one-call path on each process's async pool. Every decision is still made once: racing
decisions on the same actions, sent to whichever process takes the connection, leave each action
decided by exactly one of them, with one audit row."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import httpx
import psycopg
import pytest

from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.models import ActionRequest
from app.core.settings import Settings
from app.web import create_app
from tests.conftest import API_TOKEN, advance_clock
from tests.live_server import serve
from tests.test_quickstart import ROOT, clean_env, first_health, free_port, start_service

ACTION = {
    "agent": "sales",
    "kind": "note.record",
    "summary": "Log the follow-up",
    "payload": {"body": "Followed up with ACME"},
    "impact": {"recipients": 120},  # MEDIUM: waits for a person
}


def worker_processes(parent: int) -> list[int]:
    """The API processes uvicorn's supervisor spawned under `parent`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_decisions_from_several_api_processes_are_made_once(tmp_path: Path) -> None:
    # as the session's server (tests/conftest.py): a short path for the socket, one the server's
    # own user can reach when the tests run as root
    data = Path(tempfile.mkdtemp(prefix="odw", dir="/tmp"))
    try:
        run_two_api_processes(data, tmp_path)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def run_two_api_processes(data: Path, tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(data)
    process = start_service(
        [
            sys.executable,
            str(ROOT / "scheduler.py"),
            "--port",
            str(port),
            "--api-workers",
            "2",
            "--no-scheduler",
            "--no-executor",
        ],
        tmp_path,
        env,
    )
    try:
        assert first_health(process, port)["database"]["mode"] == "embedded"
        assert len(worker_processes(process.pid)) == 2
        token = next(
            line.split("=", 1)[1]
            for line in (data / "secrets.env").read_text().splitlines()
            if line.startswith("OPS_API_TOKEN=")
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            ids = [client.post("/actions", json=ACTION).json()["id"] for _ in range(20)]

        def decide(n: int) -> tuple[str, int]:
            action_id = ids[n % len(ids)]
            # a connection of its own each time: the kernel hands it to either process
            with httpx.Client(base_url=base, headers=headers, timeout=30) as own:
                answer = own.post(
                    f"/approvals/{action_id}/decision", json={"decision": "approve", "decided_by": f"racer-{n}"}
                )
            return action_id, answer.status_code

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(decide, range(3 * len(ids))))  # three deciders per action
        assert sorted(code for _, code in answers) == [200] * len(ids) + [409] * 2 * len(ids)
        winners = {action_id: n for n, (action_id, code) in enumerate(answers) if code == 200}
        assert sorted(winners) == sorted(ids)  # one winner per action
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for action_id, n in winners.items():
                action = client.get(f"/approvals/{action_id}").json()
                decided = [event for event in action["audit"] if event["event"] == "decided"]
                assert action["status"] == "approved" and action["decided_by"] == f"api:racer-{n}"
                assert [event["actor"] for event in decided] == [f"api:racer-{n}"]
            # a signed link's token stays out of every process's access log
            client.get("/approvals/00000000-0000-0000-0000-000000000000?t=tok-SECRET-123")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            for worker in worker_processes(process.pid):  # never left running after a failed test
                os.kill(worker, signal.SIGKILL)
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0, output
    assert "GET /approvals/00000000-0000-0000-0000-000000000000?" in output
    assert "tok-SECRET-123" not in output
    assert worker_processes(process.pid) == []
    assert not (data / "pgdata" / "postmaster.pid").exists(), "the embedded server kept running"


def test_an_api_decision_is_one_call_on_the_event_loops_pool(
    settings: Settings, db: Database, sql: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An approval or a rejection by API token (no PIN set) is `decide_action` alone, on the app's
    async pool: no read first, no worker thread. Its answers and refusals are the same."""
    app = create_app(settings, db)
    queue: ApprovalQueue = app.state.queue
    ids = [queue.submit(ActionRequest(**ACTION), actor="test").id for _ in range(3)]

    def threaded(*_: object, **__: object) -> None:
        raise AssertionError("the decision went through the thread pool")

    monkeypatch.setattr(ApprovalQueue, "decide_with_pin", threaded)
    monkeypatch.setattr(ApprovalQueue, "get", threaded)
    with serve(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        assert app.state.decisions is not None
        approved = client.post(f"/approvals/{ids[0]}/decision", json={"decision": "approve", "decided_by": "ann"})
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        assert approved.json()["decided_by"] == "api:ann" and approved.json()["decided_via"] == "api"
        again = client.post(
            f"/approvals/{ids[0]}/decision", json={"decision": "reject", "reason": "no", "decided_by": "bob"}
        )
        assert again.status_code == 409 and "api:ann" in again.json()["error"]["message"]
        rejected = client.post(
            f"/approvals/{ids[1]}/decision", json={"decision": "reject", "reason": "no", "decided_by": "bob"}
        )
        assert rejected.status_code == 200 and rejected.json()["rejection_reason"] == "no"
        missing = client.post(f"/approvals/{uuid4()}/decision", json={"decision": "approve", "decided_by": "ann"})
        assert missing.status_code == 404
        advance_clock(sql, 73 * 3600)
        late = client.post(f"/approvals/{ids[2]}/decision", json={"decision": "approve", "decided_by": "ann"})
        assert late.status_code == 410
    assert app.state.decisions is None  # closed with the server
    events = sql.execute("select action_id, actor from audit_log where event = 'decided' order by id", ()).fetchall()
    assert events == [(ids[0], "api:ann"), (ids[1], "api:bob")]


def test_the_server_freezes_what_it_started_with_out_of_the_collectors_reach(settings: Settings, db: Database) -> None:
    """A full collection walked every object of the process: a 77 ms pause every few thousand
    decisions, felt at p99 (bench/README.md). What exists at start-up is frozen while the server runs."""
    app = create_app(settings, db)
    assert gc.get_freeze_count() == 0
    with serve(app):
        assert gc.get_freeze_count() > 10_000  # the modules, the app and its models
    assert gc.get_freeze_count() == 0  # given back to the collector when the server stops
