"""`opsdesk memory import` end to end, in-process: the real CLI on the test database."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

import app.memory_sources as memory_sources
from app.cli import main
from app.settings import Settings
from tests.conftest import API_TOKEN


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> pytest.MonkeyPatch:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OPS_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("APPROVAL_LINK_SECRET", "test-link-secret-0123456789")
    monkeypatch.setenv("OPSDESK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "none")
    monkeypatch.setenv("COLUMNS", "200")
    return monkeypatch


def run(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0)


def files(sql: psycopg.Connection) -> list[str]:
    return [row[0] for row in sql.execute("select source_id from memory where source = 'file' order by source_id")]


# --- import --------------------------------------------------------------------------------------
def test_import_skips_files_that_do_not_fit_and_keeps_the_rest(
    env: pytest.MonkeyPatch, tmp_path: Path, sql: psycopg.Connection, capsys: pytest.CaptureFixture[str],
) -> None:
    env.setattr(memory_sources, "IMPORT_BATCH", 2)  # several batches, one of them with a refused file
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a-big.md").write_text("# Manual\n\n" + "All about kettles. " * 40_000)  # 760,010 characters
    (folder / "b-nul.txt").write_bytes("hello".encode("utf-16-le"))  # UTF-16 saved as .txt
    deep = folder / ("d" * 200) / ("e" * 200)
    deep.mkdir(parents=True)
    (deep / ("f" * 120 + ".md")).write_text("A path longer than a source id may be.\n")
    for name in ("c-faq.md", "r-refused.md", "s-shipping.md", "t-terms.md"):
        (folder / name).write_text(f"# {name}\n\nSome words about {name}.\n")
    sql.execute("alter table memory add constraint refuse_one check (source_id <> 'r-refused.md') not valid")

    assert run("memory", "import", str(folder), "--no-embed") == 0
    out = capsys.readouterr().out
    assert "3 created, 0 updated, 0 unchanged, 4 skipped" in out
    assert ("skipped a-big.md: 760,010 characters, more than the 500,000 a memory row holds: split it into "
            "smaller files to import it") in out
    assert "skipped b-nul.txt: contains NUL bytes, so it is not plain UTF-8 text" in out
    assert "source_id: String should have at most 500 characters" in out
    assert "skipped r-refused.md: the database refused it:" in out and "refuse_one" in out
    assert files(sql) == ["c-faq.md", "s-shipping.md", "t-terms.md"]  # the batches after the refusal too
