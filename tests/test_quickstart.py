"""The README's run command on a fresh machine: the embedded database, zero configuration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.settings import Settings
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_scheduler_py_serves_healthz_ok_on_the_embedded_database(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env["OPSDESK_DATA_DIR"] = str(tmp_path / "data")
    # run from an empty folder, so no developer's .env is read
    process = subprocess.Popen([sys.executable, str(ROOT / "scheduler.py"), "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)  # the service is still starting
        if body is None:
            process.terminate()
            raise AssertionError(f"the service never answered:\n{process.communicate(timeout=60)[0][-3000:]}")
        assert body["status"] == "ok" and body["database"]["mode"] == "embedded"
        assert (tmp_path / "data" / "secrets.env").stat().st_mode & 0o777 == 0o600

        # a CLI command on the same data folder joins the running server and leaves it running
        cli = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "approvals", "list",
                              "--json"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert '"total": 0' in cli.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["status"] == "ok"
        # a signed link's token must not reach the access log
        httpx.get(f"http://127.0.0.1:{port}/approvals/00000000-0000-0000-0000-000000000000?t=tok-SECRET-123",
                  timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "GET /approvals/00000000-0000-0000-0000-000000000000?" in output  # the access log is on
    assert "tok-SECRET-123" not in output
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists(), "the embedded server kept running"
