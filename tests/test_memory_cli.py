"""`opsdesk memory import` and `opsdesk memory sync-notion` end to end, in-process: the real CLI on
the test database, Notion through the real SDK against tests/test_notion.py's fake server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import app.memory.sources as memory_sources
from tests.cli_support import database_env, run
from tests.test_notion import KB_DB, KB_DS, TOKEN, FakeNotion, rich


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> pytest.MonkeyPatch:
    return database_env(monkeypatch, tmp_path, database_url)


def files(sql: psycopg.Connection) -> list[str]:
    return [row[0] for row in sql.execute("select source_id from memory where source = 'file' order by source_id")]


# --- import --------------------------------------------------------------------------------------
def test_import_skips_files_that_do_not_fit_and_keeps_the_rest(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    sql: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
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
    assert (
        "skipped a-big.md: 760,010 characters, more than the 500,000 a memory row holds: split it into "
        "smaller files to import it"
    ) in out
    assert "skipped b-nul.txt: contains NUL bytes, so it is not plain UTF-8 text" in out
    assert "source_id: String should have at most 500 characters" in out
    assert "skipped r-refused.md: the database refused it:" in out and "refuse_one" in out
    assert files(sql) == ["c-faq.md", "s-shipping.md", "t-terms.md"]  # the batches after the refusal too


# --- sync-notion ---------------------------------------------------------------------------------
@pytest.fixture
def notion(env: pytest.MonkeyPatch) -> Iterator[FakeNotion]:
    fake = FakeNotion()
    env.setenv("NOTION_API_KEY", TOKEN)
    env.setenv("NOTION_BASE_URL", fake.server.url)
    env.setenv("NOTION_KB_DATABASE_ID", KB_DB)
    with fake.server:
        yield fake


def kb_page(fake: FakeNotion, title: str, text: str) -> str:
    return fake.add_page(
        KB_DS,
        {"Title": {"id": "title", "type": "title", "title": rich(title)}},
        [{"type": "paragraph", "paragraph": {"rich_text": rich(text)}}],
    )


def test_sync_notion_indexes_updates_and_forgets_pages(
    notion: FakeNotion,
    sql: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipping = kb_page(notion, "Shipping times", "Orders ship in two business days.")
    hours = kb_page(notion, "Opening hours", "We open at 9 AM Phoenix time.")
    assert run("memory", "sync-notion", "--no-embed") == 0
    assert "2 page(s): 2 created, 0 updated, 0 unchanged, 0 removed" in capsys.readouterr().out
    assert run("memory", "search", "business days", "--mode", "fts") == 0
    out = capsys.readouterr().out
    assert f"notion:{shipping}" in out and "Shipping times" in out

    del notion.pages[hours]
    notion.children[shipping][0]["paragraph"]["rich_text"] = rich("Orders ship in one business day.")
    assert run("memory", "sync-notion", "--no-embed") == 0
    assert "1 page(s): 0 created, 1 updated, 0 unchanged, 1 removed" in capsys.readouterr().out
    assert sql.execute("select source_id, content from memory where source = 'notion'").fetchall() == [
        (shipping, "Orders ship in one business day.")
    ]


def test_sync_notion_forgets_nothing_when_notion_suddenly_lists_no_page(
    notion: FakeNotion,
    sql: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kb_page(notion, "Shipping times", "Orders ship in two business days.")
    assert run("memory", "sync-notion", "--no-embed") == 0
    notion.pages.clear()  # what a revoked share looks like: the query answers, with no page
    assert run("memory", "sync-notion", "--no-embed") == 4
    err = capsys.readouterr().err
    assert "returned no pages, but memory holds 1 from it: nothing was forgotten" in err and "--allow-empty" in err
    assert sql.execute("select count(*) from memory where source = 'notion'").fetchone() == (1,)
    assert run("memory", "sync-notion", "--no-embed", "--allow-empty") == 0
    assert "0 page(s): 0 created, 0 updated, 0 unchanged, 1 removed" in capsys.readouterr().out
