"""The one way Python reaches the database: `Database.call(function, **params)`.

Every SQL function in schema.sql takes parameters named `p_<name>` and returns jsonb, so a call is
`db.call("decide_action", id=..., decision=...)` whichever transport carries it:

- `PostgresTransport`: a psycopg pool on `DATABASE_URL` (also how the embedded server is reached).
  Server-side prepared statements are off, so Supabase's transaction pooler works.
- `SupabaseTransport`: supabase-py `rpc` over Supabase's REST API.

Errors raised by the functions carry our SQLSTATEs (OD404, OD409, ...) and become the matching
`app.core.errors` exception on both transports. Reaching the database is told apart precisely, since
each needs its own fix: no answer (`DatabaseUnreachable`), a refused key or user
(`DatabaseAuthRefused`), schema.sql not applied (`SchemaMissing`) or older than this opsdesk
(`SchemaOutdated`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from array import array
from collections.abc import Awaitable, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import httpx
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from app.core.credential_kinds import SUPABASE_KEY_EXPECTED
from app.core.errors import (
    SQLSTATE_ERRORS,
    DatabaseAuthRefused,
    DatabaseError,
    DatabaseUnreachable,
    InvalidInput,
    OpsdeskError,
    SchemaMismatch,
    SchemaMissing,
    SchemaOutdated,
    StatementTimeout,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 7
_TIMEOUT_HINT = "the database stopped the call at its statement timeout (Supabase allows API calls 8 s)"
_FUNCTION_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class Transport(Protocol):
    name: str

    def call(self, function: str, params: Mapping[str, Any]) -> Any: ...

    def close(self) -> None: ...


def error_from_sqlstate(code: str | None, message: str, detail: str | None) -> OpsdeskError:
    """Our SQLSTATEs map to their exception; anything else is a database failure."""
    details: dict[str, Any] = {}
    if detail:
        try:
            parsed = json.loads(detail)
            details = parsed if isinstance(parsed, dict) else {"detail": parsed}
        except ValueError:
            details = {"detail": detail}
    kind = SQLSTATE_ERRORS.get(code or "", DatabaseError)
    return kind(message, details=details)


def _pool_options(max_size: int, timeout: float) -> dict[str, Any]:
    """The sync and the async pool's connections alike: autocommit (each call is one function), and
    no server-side prepared statements (a pooler in transaction mode, as Supabase's, loses them)."""
    return {
        "min_size": 1,
        "max_size": max_size,
        "timeout": timeout,
        "kwargs": {"autocommit": True, "prepare_threshold": None},
        "open": False,
    }


class PostgresTransport:
    name = "postgres"

    def __init__(self, dsn: str, *, max_size: int = 20, timeout: float = 15.0) -> None:
        self.dsn = dsn
        self.max_size = max_size
        self.timeout = timeout
        self.pool = ConnectionPool(dsn, name="opsdesk", **_pool_options(max_size, timeout))
        try:
            self.pool.open(wait=True, timeout=timeout)
        except PoolTimeout as exc:
            self.pool.close()
            raise _connect_error(dsn, timeout) from exc

    def call(self, function: str, params: Mapping[str, Any]) -> Any:
        try:
            with self.pool.connection() as conn:
                row = conn.execute(_statement(function, tuple(params)), _values(params)).fetchone()
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise _call_error(function, exc) from exc
        return None if row is None else row[0]

    def execute_script(self, script: str) -> None:
        """Run a whole SQL file (schema.sql); only `opsdesk db init` and start-up use this."""
        try:
            with self.pool.connection() as conn:
                conn.execute(script.encode())
        except psycopg.Error as exc:
            raise DatabaseError(f"applying schema.sql failed: {exc}") from exc

    def close(self) -> None:
        self.pool.close()


@lru_cache(maxsize=512)
def _statement(function: str, keys: tuple[str, ...]) -> bytes:
    """`select fn(p_a => %(p_a)s, ...)` once per function and parameters, as bytes (ASCII names): psycopg
    renders a Composed anew on every execute, and caches its parse only of bytes or str."""
    return (
        sql.SQL("select {}({}) as result")
        .format(
            sql.Identifier(function),
            sql.SQL(", ").join(sql.SQL("{} => {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in keys),
        )
        .as_bytes(None)
    )


def _values(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: Jsonb(value) if isinstance(value, (dict, list)) else value for key, value in params.items()}


def _call_error(function: str, exc: psycopg.Error | UnicodeEncodeError) -> OpsdeskError:
    """What a failed call means, the same for the sync and the async pool."""
    if isinstance(exc, PoolTimeout):
        return DatabaseError("no database connection became free in time")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return StatementTimeout(f"{function}: {_TIMEOUT_HINT} ({exc.diag.message_primary})")
    if isinstance(exc, UnicodeEncodeError) or (isinstance(exc, psycopg.DataError) and exc.sqlstate is None):
        return _unstorable(function, str(exc))  # refused by the driver before it was sent
    return raised_error(function, exc.sqlstate, exc.diag.message_primary or str(exc), exc.diag.message_detail)


def raised_error(function: str, code: str | None, message: str, detail: str | None) -> OpsdeskError:
    """What an error raised in `function` means, whether it ended the call or a batch caught it
    for one of its items (app.approvals.batch)."""
    if code in ("22P05", "22021"):
        return _unstorable(function, message)
    return error_from_sqlstate(code, message, detail)


def _unstorable(function: str, reason: str) -> InvalidInput:
    # text PostgreSQL cannot hold (U+0000, half a surrogate pair) that escaped integrations.untrusted
    return InvalidInput(f"{function}: a value holds text PostgreSQL cannot store ({reason})")


class AsyncPostgresTransport:
    """The same calls as PostgresTransport's, on an async pool in a server's event loop: the API's
    hot endpoints (a decision) then wait for PostgreSQL without queueing for a worker thread."""

    name = "postgres"

    def __init__(self, dsn: str, *, max_size: int = 20, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self.pool = AsyncConnectionPool(dsn, name="opsdesk-async", **_pool_options(max_size, timeout))

    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout as exc:
            await self.pool.close()
            raise DatabaseUnreachable("cannot connect to PostgreSQL in time (the API's async pool)") from exc

    async def call(self, function: str, params: Mapping[str, Any]) -> Any:
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(_statement(function, tuple(params)), _values(params))
                row = await cursor.fetchone()
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise _call_error(function, exc) from exc
        return None if row is None else row[0]

    async def close(self) -> None:
        await self.pool.close()


def _connect_error(dsn: str, timeout: float) -> DatabaseError:
    """Why the pool got no connection: the pool only times out, one plain attempt tells a refused
    user or password from a server that does not answer."""
    try:
        psycopg.connect(dsn, connect_timeout=max(1, round(timeout)), autocommit=True).close()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if (exc.sqlstate or "").startswith("28"):
            return DatabaseAuthRefused(f"PostgreSQL refused the user or password of DATABASE_URL: {reason}")
        return DatabaseUnreachable(f"cannot connect to PostgreSQL (check DATABASE_URL): {reason}")
    return DatabaseUnreachable("cannot connect to PostgreSQL in time (check DATABASE_URL and DB_TIMEOUT_SECONDS)")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, array)):  # an array: a real[] sent in binary to PostgreSQL
        return [_jsonable(item) for item in value]
    return value


class SupabaseTransport:
    name = "supabase"

    def __init__(self, url: str, service_role_key: str, *, timeout: float = 15.0) -> None:
        from postgrest.exceptions import APIError
        from supabase import ClientOptions, create_client

        self._api_error = APIError
        self._timeout = timeout
        self._url = url
        # the HTTP status of this thread's last answer: supabase-py's APIError does not carry it,
        # and a gateway's refusal ({"message": "Invalid API key"}) has no PostgREST code either
        self._last = threading.local()
        # Our own HTTP client carries the timeout: supabase-py's `postgrest_client_timeout` is
        # deprecated and truncates it to whole seconds (0.5 became 0: every request failed).
        self._http = httpx.Client(timeout=timeout, event_hooks={"response": [self._remember]})
        try:
            self.client = create_client(
                url,
                service_role_key,
                options=ClientOptions(httpx_client=self._http, auto_refresh_token=False, persist_session=False),
            )
        except Exception:
            self._http.close()
            raise

    def _remember(self, response: httpx.Response) -> None:
        self._last.status = response.status_code

    def call(self, function: str, params: Mapping[str, Any]) -> Any:
        self._last.status = None
        try:
            return self.client.rpc(function, _jsonable(dict(params))).execute().data
        except self._api_error as exc:
            raise self._error(function, exc) from exc
        except httpx.TimeoutException as exc:
            raise DatabaseError(
                f"Supabase REST API did not answer within {self._timeout:g}s: {type(exc).__name__}"
            ) from exc
        except httpx.HTTPError as exc:
            raise DatabaseUnreachable(
                f"Supabase REST API unreachable at SUPABASE_URL ({self._url}): {type(exc).__name__}"
            ) from exc

    def _error(self, function: str, exc: Any) -> OpsdeskError:
        status: int | None = getattr(self._last, "status", None)
        code = exc.code if isinstance(exc.code, str) else None
        message = exc.message or "Supabase rpc failed"
        if status in (401, 403) and (code is None or code.startswith("PGRST3") or re.fullmatch(r"\d{3}", code)):
            # the API gateway (or PostgREST's JWT check) refused the key itself
            return DatabaseAuthRefused(f"Supabase refused the key (HTTP {status}: {message}): {SUPABASE_KEY_EXPECTED}")
        if code is not None and re.fullmatch(r"\d{3}", code):
            # not a PostgREST error body (a proxy's HTML page...): the SDK puts the HTTP status in
            # `code` and the whole body in `details`
            if code == "404":
                return DatabaseUnreachable(
                    f"SUPABASE_URL ({self._url}) answered HTTP 404 for the REST API: it should be the project's "
                    "URL, https://<project-ref>.supabase.co"
                )
            return DatabaseError(f"Supabase REST API answered HTTP {code} ({message})")
        if code == "57014":
            return StatementTimeout(f"{function}: {_TIMEOUT_HINT} ({message})")
        detail = exc.details
        if detail is not None and not isinstance(detail, str):
            detail = json.dumps(detail)
        return error_from_sqlstate(code, message, detail)

    def close(self) -> None:
        self._http.close()


class AsyncDatabase:
    """`Database.call` for an event loop (app.web's decision endpoint): the same naming, the same
    errors, on an AsyncPostgresTransport."""

    def __init__(self, transport: AsyncPostgresTransport) -> None:
        self.transport = transport

    def call(self, function: str, **params: Any) -> Awaitable[Any]:
        if not _FUNCTION_NAME.match(function):
            raise ValueError(f"not a function name: {function!r}")
        return self.transport.call(function, {f"p_{key}": value for key, value in params.items()})

    async def close(self) -> None:
        await self.transport.close()


async def open_async(db: Database) -> AsyncDatabase | None:
    """An async pool on the PostgreSQL `db` reaches (same DSN, size and timeout), opened in the
    running event loop; None when `db` goes through Supabase's REST API."""
    transport = db.transport
    if not isinstance(transport, PostgresTransport):
        return None
    pool = AsyncPostgresTransport(transport.dsn, max_size=transport.max_size, timeout=transport.timeout)
    await pool.open()
    return AsyncDatabase(pool)


class Database:
    """Calls schema.sql functions by name. Parameter `x` is sent as the function's `p_x`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def call(self, function: str, **params: Any) -> Any:
        if not _FUNCTION_NAME.match(function):
            raise ValueError(f"not a function name: {function!r}")
        return self.transport.call(function, {f"p_{key}": value for key, value in params.items()})

    def call_object(self, function: str, **params: Any) -> dict[str, Any]:
        """`call` for a function that returns one jsonb object."""
        return self._object(function, self.call(function, **params))

    def call_optional(self, function: str, **params: Any) -> dict[str, Any] | None:
        """`call` for a function that returns one jsonb object or null."""
        return None if (result := self.call(function, **params)) is None else self._object(function, result)

    def call_list(self, function: str, **params: Any) -> list[dict[str, Any]]:
        """`call` for a function that returns a jsonb array of objects."""
        result = self.call(function, **params)
        if not isinstance(result, list):
            raise DatabaseError(f"{function} answered {type(result).__name__}, not an array")
        return [self._object(function, item) for item in result]

    @staticmethod
    def _object(function: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise DatabaseError(f"{function} answered {type(value).__name__}, not an object")
        return value

    def check_schema(self) -> None:
        """Start-up: the schema is there and current. Only its absence is reported as such; a
        refused key or an unreachable server keeps its own error."""
        try:
            version = self.call("schema_version")
        except (DatabaseAuthRefused, DatabaseUnreachable):
            raise
        except DatabaseError as exc:
            cause = exc.__cause__
            sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "code", None)
            if sqlstate == "42501":  # the function exists, and this role may not run it
                raise DatabaseAuthRefused(
                    f"the database refused to run opsdesk's functions ({exc.message}): over the REST API, "
                    f"{SUPABASE_KEY_EXPECTED}; over DATABASE_URL, connect as the role that applied schema.sql"
                ) from exc
            if sqlstate not in ("42883", "PGRST202"):
                raise
            raise SchemaMissing(
                "the opsdesk schema is not applied to this database: run `opsdesk db init` "
                "(or paste schema.sql into Supabase's SQL editor)"
            ) from exc
        if isinstance(version, int) and version < SCHEMA_VERSION:
            raise SchemaOutdated(
                f"database schema version {version}, this opsdesk needs {SCHEMA_VERSION}: schema.sql is older "
                "than this opsdesk; apply the new one with `opsdesk db init` (or paste it into Supabase's SQL "
                "editor): it is safe to apply again"
            )
        if version != SCHEMA_VERSION:
            raise SchemaMismatch(
                f"database schema version {version}, this opsdesk needs {SCHEMA_VERSION}: the database has a "
                "newer schema.sql than this opsdesk; upgrade opsdesk"
            )

    def close(self) -> None:
        self.transport.close()


def schema_sql() -> str:
    """schema.sql from the installed package, or from the source tree in a checkout."""
    packaged = resources.files("app").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "schema.sql").read_text(encoding="utf-8")
