"""The README's run command on a fresh machine: the embedded database, zero configuration."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.core.settings import Settings
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def clean_env(data_dir: Path) -> dict[str, str]:
    """The machine's environment without any opsdesk setting: a fresh machine's configuration."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env["OPSDESK_DATA_DIR"] = str(data_dir)
    return env


def start_service(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """The service, its output kept for the test (and for first_health's message if it never answers)."""
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def first_health(process: subprocess.Popen[str], port: int) -> dict[str, Any]:
    """/healthz once the service listens; the service's output if it never does."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
        except httpx.TransportError:
            time.sleep(0.1)  # the service is still starting
    process.terminate()
    raise AssertionError(f"the service never answered:\n{process.communicate(timeout=60)[0][-3000:]}")


def test_scheduler_py_serves_healthz_ok_on_the_embedded_database(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path / "data")
    # run from an empty folder, so no developer's .env is read
    process = start_service([sys.executable, str(ROOT / "scheduler.py"), "--port", str(port)], tmp_path, env)
    try:
        body = first_health(process, port)
        assert body["status"] == "ok" and body["database"]["mode"] == "embedded"
        assert (tmp_path / "data" / "secrets.env").stat().st_mode & 0o777 == 0o600

        # a CLI command on the same data folder joins the running server and leaves it running
        cli = subprocess.run(
            [sys.executable, "-c", "from scheduler import main; main()", "approvals", "list", "--json"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert '"total": 0' in cli.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["status"] == "ok"
        # a signed link's token must not reach the access log
        httpx.get(f"http://127.0.0.1:{port}/approvals/00000000-0000-0000-0000-000000000000?t=tok-SECRET-123", timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "GET /approvals/00000000-0000-0000-0000-000000000000?" in output  # the access log is on
    assert "tok-SECRET-123" not in output
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists(), "the embedded server kept running"


def build_wheel(source: Path, wheels: Path) -> Path:
    """opsdesk's wheel from `source`, built offline with this environment's build tools."""
    offline = ["--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = wheels.glob("opsdesk-*.whl")
    return wheel


def venv_with_wheel(wheel: Path, venv: Path) -> tuple[Path, Path]:
    """A new virtualenv (no system site-packages) with `wheel` installed; the dependencies are
    borrowed from this environment by a .pth (installing them again offline would take minutes),
    never opsdesk itself. Returns its python and its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (site_packages / "opsdesk-test-deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return python, site_packages


def test_the_built_wheel_installed_in_a_new_virtualenv_runs_the_service(tmp_path: Path) -> None:
    """What a fresh clone's `pip install .` gives: a wheel with schema.sql, the page templates and
    scheduler.py in it. The new virtualenv has no system site-packages; only the dependencies are
    borrowed from this one (a .pth: installing them again offline would take minutes), never opsdesk."""
    wheel = build_wheel(ROOT, tmp_path / "wheels")
    venv = tmp_path / "venv"
    python, _ = venv_with_wheel(wheel, venv)
    installed = subprocess.run(
        [
            python,
            "-c",
            "import app.core.database, scheduler; print(app.core.database.__file__); print(scheduler.__file__)",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(Path(path).is_relative_to(venv) for path in installed), installed  # not this checkout

    port = free_port()
    # outside pytest's own temp folder, which another pytest session starting meanwhile makes private
    # again (0700), locking out the server's own system user
    data = Path(tempfile.mkdtemp(prefix="odwheel", dir="/tmp"))
    process = start_service([str(venv / "bin" / "opsdesk"), "run", "--port", str(port)], tmp_path, clean_env(data))
    try:
        body = first_health(process, port)
        assert body["status"] == "ok" and body["database"]["mode"] == "embedded"  # schema.sql was in the wheel
        page = httpx.get(f"http://127.0.0.1:{port}/approvals/00000000-0000-0000-0000-000000000000?t=forged", timeout=5)
        assert page.status_code == 403 and "<html" in page.text.lower()  # the templates were in the wheel
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        shutil.rmtree(data, ignore_errors=True)
    assert process.returncode == 0, output
