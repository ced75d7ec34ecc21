"""Debian's pgbouncer in transaction mode in front of the session's embedded server, on 127.0.0.1,
as Supabase's transaction pooler (port 6543) sits in front of a project's database.

pgbouncer reaches the server over its unix socket (the embedded server listens on no TCP port) and
trusts the users listed in its auth file, as the server trusts local connections. It refuses to
run as root, so under root it runs as the embedded server's own system user. It dies with the test
process (PR_SET_PDEATHSIG) and is stopped at the end of the session.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

BINARY_PLACES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
USERS = ("postgres", "sb_postgres", "authenticator")


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next((path for path in BINARY_PLACES if os.access(path, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(user: str | None) -> Any:
    def prepare() -> None:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return prepare


class Pgbouncer:
    def __init__(self, server: Any, binary: str) -> None:
        target = conninfo_to_dict(server.get_uri())
        self.folder = Path(tempfile.mkdtemp(prefix="odpgb", dir="/tmp"))
        self.port = _free_port()
        (self.folder / "users.txt").write_text("".join(f'"{user}" ""\n' for user in USERS))
        (self.folder / "pgbouncer.ini").write_text(f"""[databases]
* = host={target["host"]} port={target.get("port", 5432)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.folder / "users.txt"}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
logfile = {self.folder / "pgbouncer.log"}
""")
        user: str | None = None
        if os.geteuid() == 0:  # pgbouncer will not run as root; the server's own user reaches its socket
            user = pwd.getpwuid(Path(target["host"]).stat().st_uid).pw_name
            shutil.chown(self.folder, user)
            for file in self.folder.iterdir():
                shutil.chown(file, user)
        self.process = subprocess.Popen(
            [binary, str(self.folder / "pgbouncer.ini")],
            preexec_fn=_as_user(user),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self._wait_until_listening()
        except RuntimeError:
            self.stop()
            raise

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen on port {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        exited = self.process.poll() is not None and self.process.stderr is not None
        stderr = self.process.stderr.read().decode() if exited and self.process.stderr else ""
        return (path.read_text() if path.exists() else "") + stderr

    def uri(self, database: str, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.folder, ignore_errors=True)
