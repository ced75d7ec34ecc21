"""A Supabase-shaped database on the test session's embedded server, built once per session.

It follows Supabase's own set-up scripts, supabase/postgres at commit 7db7e1a9 (read with the
`fetch` tool; the repository is public):

- `migrations/db/init-scripts/00000000000000-initial-schema.sql`: the roles `anon`, `authenticated`
  (NOLOGIN NOINHERIT), `service_role` (NOLOGIN NOINHERIT BYPASSRLS) and `authenticator` (LOGIN
  NOINHERIT, a member of the three); the schema `extensions`; USAGE on `public` and `extensions`
  for them; the default privileges of the `postgres` role in `public` (ALL on tables, functions
  and sequences to postgres, anon, authenticated, service_role); anon's 3 s and authenticated's
  8 s statement timeouts.
- `.../00000000000003-post-setup.sql`: postgres' search_path `"$user", public, extensions`.
- `migrations/db/migrations/10000000000000_demote-postgres.sql`: postgres becomes NOSUPERUSER
  CREATEDB CREATEROLE LOGIN REPLICATION BYPASSRLS, with ALL on the database and on `extensions`.
- `20221028101028_set_authenticator_timeout.sql` and `20231130133139_set_lock_timeout_to_
  authenticator_role.sql`: authenticator's statement_timeout and lock_timeout are 8 s.
- `20230529180330_alter_api_roles_for_inherit.sql`: the API roles INHERIT.
- `20230224042246_grant_extensions_perms_for_postgres.sql`: postgres' rights in `extensions`.

The embedded server's superuser is already called `postgres`, so Supabase's demoted `postgres`
is `sb_postgres` here: it owns the databases and applies schema.sql, as on Supabase.

Not reproduced: supautils, whose `privileged_extensions` (vector among them) lets Supabase's
postgres create `vector` although it is not a trusted extension: here a copy of pgvector's control
file marked `trusted`, found through PostgreSQL 18's `extension_control_path` for that role only,
gives the same result. Also not here: pg-safeupdate (no build for this server) and the auth,
storage and realtime schemas, which opsdesk never touches.

Templates: `sb_base` (vector created in `extensions` first, as the Dashboard does), `sb_novector`
(schema.sql creates it) and `sb_template` (sb_base with schema.sql applied by sb_postgres in a
fresh session), which every flow test clones.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app.core.database import schema_sql

OWNER = "sb_postgres"
API_ROLES = ("anon", "authenticated", "service_role")
TEMPLATE = "sb_template"
BASE = "sb_base"
NO_VECTOR = "sb_novector"
API_STATEMENT_TIMEOUT = "8s"

ROLES_SQL = f"""
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit;
grant anon to authenticator;
grant authenticated to authenticator;
grant service_role to authenticator;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '{API_STATEMENT_TIMEOUT}';
alter role authenticator set lock_timeout = '8s';
alter role authenticated inherit;
alter role anon inherit;
alter role service_role inherit;
create role {OWNER} nosuperuser createdb createrole login replication bypassrls;
alter role {OWNER} set search_path to "$user", public, extensions;
"""

EVERYONE = f"{OWNER}, anon, authenticated, service_role"
# run as the superuser in each base database (default privileges are per database)
DATABASE_SQL = f"""
create schema if not exists extensions;
grant usage on schema public to {EVERYONE};
alter default privileges for role {OWNER} in schema public grant all on tables to {EVERYONE};
alter default privileges for role {OWNER} in schema public grant all on functions to {EVERYONE};
alter default privileges for role {OWNER} in schema public grant all on sequences to {EVERYONE};
grant usage on schema extensions to {OWNER}, anon, authenticated, service_role;
grant all on schema extensions to {OWNER};
grant all privileges on all tables in schema extensions to {OWNER} with grant option;
grant all privileges on all routines in schema extensions to {OWNER} with grant option;
alter default privileges in schema extensions grant all on tables to {OWNER} with grant option;
alter default privileges in schema extensions grant all on routines to {OWNER} with grant option;
"""


def uri(server: Any, database: str, user: str | None = None, **options: str) -> str:
    """A connection string to `database` on the embedded server, as `user` (default superuser)."""
    params = conninfo_to_dict(server.get_uri(database))
    if user is not None:
        params["user"] = user
        params.pop("password", None)
    return make_conninfo("", **params, **options)


def _trusted_vector(server: Any, folder: Path) -> Path:
    """A copy of pgvector's extension files whose control file says `trusted`, as supautils lets
    Supabase's postgres create `vector`. The server may run as another user: it must read them."""
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        share = conn.execute("select setting from pg_config where name = 'SHAREDIR'").fetchone()
    source = Path(share[0]) / "extension"
    target = folder / "extension"
    target.mkdir()
    for file in source.glob("vector*"):
        shutil.copy(file, target / file.name)
    control = target / "vector.control"
    control.write_text(control.read_text() + "trusted = true\n")
    for path in (folder, target, *target.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


class SupabaseShape:
    """The roles (cluster-wide) and the templates; `clone` makes a test's own database."""

    def __init__(self, server: Any, folder: Path) -> None:
        self.server = server
        extension_path = _trusted_vector(server, folder)
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute(ROLES_SQL)
            conn.execute(f"alter role {OWNER} set extension_control_path = '{extension_path}:$system'")
            for name in (BASE, NO_VECTOR):
                conn.execute(f"create database {name} owner {OWNER}")
        for name, vector in ((BASE, True), (NO_VECTOR, False)):
            with psycopg.connect(uri(server, name), autocommit=True) as conn:
                conn.execute(DATABASE_SQL)
                if vector:  # enabled from the Dashboard before anything else
                    conn.execute("create extension vector with schema extensions")
        self.clone(BASE, TEMPLATE)
        with psycopg.connect(self.owner_uri(TEMPLATE), autocommit=True) as conn:
            conn.execute(schema_sql().encode())

    def clone(self, template: str, name: str | None = None) -> str:
        name = name or f"sb_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
            conn.execute(f"create database {name} template {template} owner {OWNER}")
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")

    def owner_uri(self, database: str, **options: str) -> str:
        return uri(self.server, database, OWNER, **options)

    def authenticator_uri(self, database: str, **options: str) -> str:
        return uri(self.server, database, "authenticator", **options)

    def superuser_uri(self, database: str) -> str:
        return uri(self.server, database)
