"""`opsdesk run` as a subprocess, as an operator starts it, for bench/compare.py.

The service gets a clean environment (no `.env`: it runs in its own folder) pointing DATABASE_URL at
the bench's server, the API only (`--no-scheduler --no-executor`: the decisions are measured, not
the work they release), and the API process count:

- `OPSDESK_API_WORKERS=N` is always in its environment (the setting `opsdesk run` reads);
- `--api-workers N` (or the flag named by `--service-workers-flag`) is passed when `opsdesk run
  --help` lists that flag (it does since issue 15); an opsdesk without it runs one API process,
  and asking for more then fails loudly rather than measuring one process under another name.
  (`--workers` is the number of executor threads.)
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.compare_common import BenchFailure

API_TOKEN = "bench-api-token-0123456789abcdef"
LINK_SECRET = "bench-link-secret-0123456789abcdef"
START_TIMEOUT = 120.0


def opsdesk_command() -> Path:
    """The `opsdesk` of the environment running this script (the worktree's .venv)."""
    found = Path(sys.executable).parent / "opsdesk"
    if not found.exists():
        raise BenchFailure(f"no `opsdesk` beside {sys.executable}: run this from the project's virtualenv")
    return found


def service_env(database_url: str, folder: Path, api_workers: int) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if key in os.environ}
    env.update(
        {
            "DATABASE_URL": database_url,
            "OPS_API_TOKEN": API_TOKEN,
            "APPROVAL_LINK_SECRET": LINK_SECRET,
            "OPSDESK_DATA_DIR": str(folder),
            "OPSDESK_API_WORKERS": str(api_workers),
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
    )
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def workers_arguments(api_workers: int, flag: str, env: dict[str, str], cwd: Path) -> tuple[list[str], str]:
    """The command-line arguments that ask for `api_workers` API processes, and how they were asked."""
    shown = subprocess.run(
        [str(opsdesk_command()), "run", "--help"], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    ).stdout
    if re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown):
        return [flag, str(api_workers)], f"{flag} {api_workers} and OPSDESK_API_WORKERS={api_workers}"
    if api_workers == 1:
        return [], f"one API process: `opsdesk run` has no {flag} (OPSDESK_API_WORKERS=1 set)"
    raise BenchFailure(
        f"{api_workers} API processes asked for, but `opsdesk run --help` lists no {flag}; "
        "name the flag with --service-workers-flag"
    )


class Service:
    """`opsdesk run` in its own process group (so API worker processes it may fork stop with it)."""

    def __init__(
        self, database_url: str, folder: Path, *, api_workers: int = 1, workers_flag: str = "--api-workers"
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = service_env(database_url, folder, api_workers)
        self.port = free_port()
        extra, self.workers_passed = workers_arguments(api_workers, workers_flag, self.env, folder)
        self.command = [
            str(opsdesk_command()),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-scheduler",
            "--no-executor",
            *extra,
        ]
        self.log_path = folder / "service.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_seconds: float | None = None

    def start(self) -> None:
        began = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.folder,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchFailure(f"`opsdesk run` exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.request("GET", "/healthz")
            except OSError:
                status = 0
            if status == 200:
                self.ready_seconds = round(time.perf_counter() - began, 2)
                return
            time.sleep(0.1)
        self.stop()
        raise BenchFailure(f"`opsdesk run` did not answer /healthz within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=self.headers())
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    @staticmethod
    def headers() -> dict[str, str]:
        return {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the group this object started, nothing else
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def describe(self) -> dict[str, Any]:
        return {
            "command": " ".join(["opsdesk", *self.command[1:]]),
            "api_workers": self.workers_passed,
            "environment": "DATABASE_URL (the bench server, unix socket), OPS_API_TOKEN, APPROVAL_LINK_SECRET, "
            "OPSDESK_DATA_DIR, OPSDESK_API_WORKERS; no .env; LOG_LEVEL default (INFO)",
            "seconds_until_healthz": self.ready_seconds,
        }
