"""Which code a benchmark measured: the commit, the files changed since it, and schema.sql's hash."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def code_version(schema: str) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "app", "integrations", "schema.sql")
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": None if changed is None else [line[3:] for line in changed.splitlines()],
        "schema_sql_sha256": hashlib.sha256(schema.encode()).hexdigest(),
    }
