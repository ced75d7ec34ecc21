"""Running the `opsdesk` CLI in-process in a test, with an environment nothing leaks into."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.settings import Settings
from scheduler import main
from tests.conftest import API_TOKEN


def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting comes from the machine or a developer's .env; the data folder is the test's."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPSDESK_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def database_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> pytest.MonkeyPatch:
    """A clean environment on the test's database, without an embeddings provider."""
    clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OPS_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("APPROVAL_LINK_SECRET", "test-link-secret-0123456789")
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "none")
    return monkeypatch


def run(*args: str) -> int:
    """`opsdesk ARGS...`; its exit code."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0)
