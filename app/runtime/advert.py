"""Where a running service can be asked: `opsdesk run` writes `<data dir>/service.json` (its API's
address, its process id and which database it serves) while its API listens, and removes it when
it stops. A CLI command that only reads (`opsdesk approvals list`) asks that service over HTTP
instead of opening the database itself: no connection pool, schema check or memory check.

The file is used only when its process is alive and it serves the database the command would
open (the same fingerprint of DATABASE_URL, SUPABASE_URL or the embedded folder). Without it, or
when the service does not answer, the command opens the database as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.core.settings import Settings

FILE_NAME = "service.json"


def database_fingerprint(settings: Settings) -> str:
    """Which database these settings open, as a digest (the URL holds a password)."""
    mode = settings.database_mode
    if mode == "supabase":
        where = str(settings.supabase_url)
    elif mode == "embedded":
        where = str(settings.data_dir.resolve())
    else:
        assert settings.database_url is not None
        where = settings.database_url.get_secret_value()
    return hashlib.sha256(f"{mode}\n{where}".encode()).hexdigest()


def local_address(host: str, port: int) -> str:
    """The URL a command on this machine reaches the API at (a wildcard address listens on loopback too)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def advertise(settings: Settings, *, host: str, port: int) -> Path:
    """Write the service file (mode 0600: it tells where the API is, not how to get in)."""
    path = settings.data_dir / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"url": local_address(host, port), "pid": os.getpid(), "database": database_fingerprint(settings)}
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record))
    partial.chmod(0o600)
    partial.replace(path)  # whole or not at all: a reader never sees half a file
    return path


def withdraw(path: Path) -> None:
    """Remove the service file if it is still this process's (another service may have replaced it)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def running_service(settings: Settings) -> str | None:
    """The URL of a live service on the database `settings` open, or None."""
    try:
        record: Any = json.loads((settings.data_dir / FILE_NAME).read_text())
        pid, url, database = int(record["pid"]), str(record["url"]), record["database"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if database != database_fingerprint(settings):
        return None
    try:
        os.kill(pid, 0)  # signal 0: is it alive (a crash leaves the file behind)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return url


def ask(url: str, path: str, query: dict[str, Any], token: str, *, timeout: float = 5.0) -> Any | None:
    """GET `path` from the service at `url` with the API token; its JSON answer, or None when it
    cannot give one (gone meanwhile, refusing the token, failing): the caller then opens the
    database. Standard library only: this is the quick path of a command."""
    import http.client
    from urllib.parse import urlencode, urlsplit

    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=timeout)
    try:
        conn.request(
            "GET",
            f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        response = conn.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
