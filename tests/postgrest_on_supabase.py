"""A stand-in for Supabase's REST API (the gateway and PostgREST) backed by a real database, so the
real supabase-py client (app.core.database.SupabaseTransport) runs opsdesk's flows over "REST".

Like PostgREST behind Supabase's gateway, for `POST /rest/v1/rpc/<function>`:
- the gateway checks the `apikey` header: none is 401 `{"message": "No API key found in request"}`,
  an unknown one 401 `{"message": "Invalid API key", "hint": "Double check your Supabase `anon` or
  `service_role` API key."}` (the shape Supabase answers, e.g. nuxt-modules/supabase#195);
- PostgREST connects as `authenticator` (so its role settings apply: the 8 s statement timeout),
  and per request, in one transaction, sets the key's role (`service_role` or `anon`) with
  `set_config('role', …, true)`, the search path and `request.jwt.claims`, then calls the
  function with the JSON body's keys as named arguments;
- a function not found by name and argument names is 404 PGRST202; database errors are
  `{"code", "message", "details", "hint"}` with PostgREST's status for the SQLSTATE
  (docs.postgrest.org, references/errors: 42501 is 401 for the anonymous role, 403 otherwise; 57*
  500; P0001 400; 42883 404; other 400...).
There is no PostgREST package in Debian, and no binary is downloaded: this is the contract opsdesk
relies on, on the real database, roles and timeouts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

SERVICE_KEY = "sb_secret_standin-service-role-key-0123456789"
ANON_KEY = "sb_publishable_standin-anon-key-0123456789"
INVALID_KEY = {"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."}
NO_KEY = {"message": "No API key found in request", "hint": "No `apikey` request header or url param was found."}

# SQLSTATE prefix -> HTTP status, most specific first (PostgREST's table)
_STATUS = (
    ("23503", 409),
    ("23505", 409),
    ("25006", 405),
    ("53400", 500),
    ("42883", 404),
    ("42P01", 404),
    ("42P17", 500),
    ("P0001", 400),
    ("08", 503),
    ("09", 500),
    ("0L", 403),
    ("0P", 403),
    ("25", 500),
    ("28", 403),
    ("2D", 500),
    ("38", 500),
    ("39", 500),
    ("3B", 500),
    ("40", 500),
    ("53", 503),
    ("54", 500),
    ("55", 500),
    ("57", 500),
    ("58", 500),
    ("F0", 500),
    ("HV", 500),
    ("P0", 500),
    ("XX", 500),
)


def http_status(sqlstate: str, role: str) -> int:
    if sqlstate == "42501":
        return 401 if role == "anon" else 403
    return next((status for prefix, status in _STATUS if sqlstate.startswith(prefix)), 400)


class PostgrestOnSupabase:
    """Serves on 127.0.0.1 until `close()`. `statement_timeout` scales Supabase's 8 s down for a
    test that must see it at a size the suite can afford; `calls` records each call's duration."""

    def __init__(self, authenticator_dsn: str, *, statement_timeout: str | None = None) -> None:
        options = f"-c statement_timeout={statement_timeout}" if statement_timeout else None
        self.pool = ConnectionPool(
            authenticator_dsn,
            min_size=1,
            max_size=8,
            open=True,
            kwargs={"autocommit": True, **({"options": options} if options else {})},
        )
        self.keys = {SERVICE_KEY: "service_role", ANON_KEY: "anon"}
        self.calls: list[tuple[str, float, int]] = []  # function, seconds, status
        self.arguments: list[tuple[str, dict[str, Any]]] = []  # function, what it was called with
        self._lock = threading.Lock()
        self._schema_cache: dict[tuple[str, frozenset[str]], dict[str, str] | None] = {}
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two sends: with Nagle's algorithm the second waits for
            # the client's delayed ACK, 40 ms on every kept-alive request
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, body = standin.answer(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    # --- one request ------------------------------------------------------------------------
    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if "apikey" not in headers:
            return 401, NO_KEY
        role = self.keys.get(headers["apikey"])
        bearer = f"Bearer {headers['apikey']}"
        if role is None or headers.get("authorization", bearer) != bearer:
            return 401, INVALID_KEY
        if not path.startswith("/rest/v1/rpc/"):
            return 404, {"code": "PGRST125", "details": None, "hint": None, "message": f"Invalid path {path}"}
        function = path.removeprefix("/rest/v1/rpc/")
        try:
            args = json.loads(raw or b"{}")
        except ValueError:
            return 400, {"code": "PGRST102", "details": None, "hint": None, "message": "Empty or invalid json"}
        if not isinstance(args, dict):
            return 400, {"code": "PGRST102", "details": None, "hint": None, "message": "Empty or invalid json"}
        started = time.perf_counter()
        status, body = self._call(function, args, role)
        with self._lock:
            self.calls.append((function, time.perf_counter() - started, status))
            self.arguments.append((function, args))
        return status, body

    def _call(self, function: str, args: dict[str, Any], role: str) -> tuple[int, Any]:
        with self.pool.connection() as conn:
            key = (function, frozenset(args))
            if key not in self._schema_cache:  # PostgREST reads signatures once, into its schema cache
                self._schema_cache[key] = self._signature(conn, function, set(args))
            types = self._schema_cache[key]
            if types is None:
                names = ", ".join(sorted(args))
                return 404, {
                    "code": "PGRST202",
                    "hint": None,
                    "details": f"Searched for the function public.{function} with parameters {names} or "
                    "with a single unnamed json/jsonb parameter, but no matches were found in "
                    "the schema cache.",
                    "message": f"Could not find the function public.{function}({names}) in the schema cache",
                }
            try:
                with conn.transaction():
                    conn.execute(
                        "select set_config('role', %s, true), set_config('search_path', 'public, extensions', "
                        "true), set_config('request.jwt.claims', %s, true), "
                        "set_config('request.method', 'POST', true)",
                        (role, json.dumps({"role": role})),
                    )
                    columns = ", ".join(f"{name} {types[name]}" for name in args) or "_unused int"
                    named = ", ".join(f"{name} := a.{name}" for name in args)
                    row = conn.execute(
                        f"select to_jsonb(public.{function}({named})) from jsonb_to_record(%s) as a({columns})",
                        (Jsonb(args),),
                    ).fetchone()
            except psycopg.Error as exc:
                diag = exc.diag
                return http_status(exc.sqlstate or "XX000", role), {
                    "code": exc.sqlstate,
                    "message": diag.message_primary,
                    "details": diag.message_detail,
                    "hint": diag.message_hint,
                }
        return 200, None if row is None else row[0]

    @staticmethod
    def _signature(conn: psycopg.Connection, function: str, given: set[str]) -> dict[str, str] | None:
        """The argument types of the public function called `function` that takes exactly these
        named arguments (those left out have defaults), as PostgREST's schema cache finds it."""
        rows = conn.execute(
            "select p.proargnames, array(select format_type(t, null) from unnest(p.proargtypes::oid[]) t), "
            "p.pronargdefaults from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname = %s",
            (function,),
        ).fetchall()
        for names, types, defaults in rows:
            names = names or []
            required = set(names[: len(names) - defaults])
            if required <= given <= set(names):
                return dict(zip(names, types, strict=True))
        return None

    # --- for assertions -----------------------------------------------------------------------
    @contextmanager
    def as_role(self, role: str = "service_role") -> Iterator[psycopg.Connection]:
        """A transaction set up as a request's: to read what a request's session sees."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("select set_config('role', %s, true)", (role,))
            yield conn

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.pool.close()
