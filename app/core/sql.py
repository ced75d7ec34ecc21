"""The SQL functions of app/core: the database's own functions: its health and the schema's version.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from typing import Any

from app.core.database import Database


def applied_schema(db: Database) -> Any:
    return db.call("applied_schema")


def record_schema_applied(db: Database, *, sha256: str | None) -> Any:
    return db.call("record_schema_applied", sha256=sha256)


def health(db: Database) -> Any:
    return db.call("health")
