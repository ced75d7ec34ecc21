"""The SQL functions of app/kinds: what the built-in action kinds write.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from app.core.database import Database


def record_note(db: Database, *, action_id: UUID | str | None, body: str | None, metadata: Any) -> dict[str, Any]:
    return db.call_object("record_note", action_id=action_id, body=body, metadata=metadata)
