"""Retention: memory rows of each kind, and audit-log rows, past their time (settings
MEMORY_RETENTION_DAYS, AUDIT_RETENTION_DAYS) are archived to gzip JSON-lines files under the
archive folder, then deleted.

Order matters: a batch is read, appended to the archive as its own gzip member, flushed to disk
(fsync), and only then deleted, each row by id and last update. A crash between the two leaves
the rows in the database and in the archive; the next run archives them again. Nothing is lost.
One prune at a time across every instance (a lease in the database).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from app.core.database import Database
from app.core.settings import Settings
from app.memory import sql

LEASE = "memory_prune"
LEASE_SECONDS = 3600.0
BATCH = 500


class PruneReport(BaseModel):
    archived: dict[str, int] = Field(default_factory=dict)  # "memory:<kind>" / "audit_log" -> rows
    files: list[str] = Field(default_factory=list)
    skipped: str | None = None  # why nothing ran


class Archive:
    """One gzip JSON-lines file; every append is a complete gzip member on disk before it returns
    (gzip readers read consecutive members as one stream)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb") as member:
                for row in rows:
                    member.write((json.dumps(row, ensure_ascii=False, default=str) + "\n").encode())
            raw.flush()
            os.fsync(raw.fileno())
        if new:  # the file's name must survive a crash too
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        self.rows += len(rows)


def _stamp() -> str:
    # a file name only; every cutoff is computed by the database clock
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def prune(db: Database, settings: Settings, *, holder: str | None = None) -> PruneReport:
    holder = holder or f"{socket.gethostname()}:{os.getpid()}"
    lease = sql.take_maintenance_lease(db, name=LEASE, holder=holder, seconds=LEASE_SECONDS)
    if not lease["taken"]:
        return PruneReport(skipped=f"another prune is running ({lease['holder']})")
    report = PruneReport()
    stamp = _stamp()
    try:
        for kind, days in sorted(settings.memory_retention_days.items()):
            if days > 0:
                _prune_memory(db, Archive(settings.archive_dir / f"memory-{kind}-{stamp}.jsonl.gz"), kind, days, report)
        if settings.audit_retention_days > 0:
            _prune_audit(
                db, Archive(settings.archive_dir / f"audit_log-{stamp}.jsonl.gz"), settings.audit_retention_days, report
            )
    finally:
        sql.release_maintenance_lease(db, name=LEASE, holder=holder)
    return report


def _prune_memory(db: Database, archive: Archive, kind: str, days: int, report: PruneReport) -> None:
    while rows := sql.expired_memory(db, kind=kind, days=days, limit=BATCH):
        archive.append(rows)
        deleted = sql.drop_archived_memory(
            db, rows=[{"id": row["id"], "updated_at": row["updated_at"]} for row in rows]
        )["deleted"]
        if deleted == 0:  # every row changed since it was read; the next run takes the new versions
            break
    _record(archive, f"memory:{kind}", report)


def _prune_audit(db: Database, archive: Archive, days: int, report: PruneReport) -> None:
    while True:
        expired = sql.expired_audit(db, days=days, limit=BATCH)
        rows = expired["rows"]
        if not rows:
            break
        archive.append(rows)
        dropped = sql.drop_archived_audit(db, days=days, cutoff=expired["cutoff"], through_id=rows[-1]["id"])
        if dropped["deleted"] == 0:  # cannot happen to append-only rows; never loop on it
            break
    _record(archive, "audit_log", report)


def _record(archive: Archive, name: str, report: PruneReport) -> None:
    if archive.rows:
        report.archived[name] = archive.rows
        report.files.append(str(archive.path))
