"""`opsdesk run --api-workers N`: the HTTP API in several processes on one port. Every decision is
still made once: racing decisions on the same actions, sent to whichever process takes the
connection, leave each action decided by exactly one of them, with one audit row."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.test_quickstart import ROOT, clean_env, first_health, free_port

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
    port = free_port()
    # as the session's server (tests/conftest.py): a short path for the socket, one the server's
    # own user can reach when the tests run as root
    data = Path(tempfile.mkdtemp(prefix="odw", dir="/tmp"))
    env = clean_env(data)
    process = subprocess.Popen(
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
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "GET /approvals/00000000-0000-0000-0000-000000000000?" in output
    assert "tok-SECRET-123" not in output
    assert worker_processes(process.pid) == []
    assert not (data / "pgdata" / "postmaster.pid").exists(), "the embedded server kept running"
    shutil.rmtree(data, ignore_errors=True)
