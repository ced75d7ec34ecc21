"""The shared rate limits' windows in the database: the `RateSlots` the integrations are handed."""

from __future__ import annotations

from app.clients import sql
from app.core.database import Database
from integrations.rate_limit import SlotAnswer


class DbRateSlots:
    """`take_rate_slot` (schema.sql): one atomic upsert per call, so processes share each window."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def take(self, bucket: str, *, limit: int, window_seconds: float) -> SlotAnswer:
        row = sql.take_rate_slot(self._db, bucket=bucket, limit=limit, window_seconds=window_seconds)
        return SlotAnswer.model_validate(row)
