"""The SQL functions the CLI itself calls: the demo's (`opsdesk demo`).

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from typing import Any

from app.core.database import Database


def demo_mark(db: Database, *, ids: list[str]) -> dict[str, Any]:
    return db.call_object("demo_mark", ids=ids)


def demo_remove(db: Database, *, actor: str) -> dict[str, Any]:
    return db.call_object("demo_remove", actor=actor)
