"""What feeds memory from outside: Markdown/text files (`opsdesk memory import PATH`) and the
knowledge base in Notion (`opsdesk memory sync-notion`).

Both write through `MemoryStore.upsert`, keyed by (source, source_id), so importing or syncing
again updates rows instead of adding new ones, and an unchanged document keeps its embedding.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field, ValidationError

from app.core.errors import DatabaseError, InvalidInput
from app.memory import sql
from app.memory.models import MAX_CONTENT_CHARS, MemoryItem, UpsertCounts
from app.memory.store import MemoryStore

if TYPE_CHECKING:
    from integrations.notion import KBPage

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
MAX_FILE_BYTES = 2_000_000  # read no further: more bytes than MAX_CONTENT_CHARS characters anyway
IMPORT_BATCH = 100  # files per database call: a refused file costs at most this many retries
TOO_LONG_HINT = "split it into smaller files to import it"
_HEADING = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.MULTILINE)


class ImportReport(UpsertCounts):
    skipped: dict[str, str] = Field(default_factory=dict)  # relative path -> why


class SyncReport(UpsertCounts):
    pages: int = 0
    removed: int = 0


class KnowledgeBase(Protocol):
    """integrations.notion.NotionClient; tests pass a fake."""

    def read_kb(self) -> list[KBPage]: ...


class TextDocument(BaseModel):
    relative: str
    title: str
    text: str
    modified: datetime


def _title(text: str, path: Path) -> str:
    heading = _HEADING.search(text)
    if heading and path.suffix.lower() in {".md", ".markdown"}:
        return heading.group(1)[:1000]
    return path.stem.replace("_", " ").replace("-", " ")[:1000]


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        # hidden folders (.git, .obsidian) hold tooling, not knowledge
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


def read_documents(root: Path) -> tuple[list[TextDocument], dict[str, str]]:
    """The text files under `root` (or `root` itself), each named by its path relative to the
    folder imported (for a single file: its name), with '/' separators on every system."""
    if not root.exists():
        raise InvalidInput(f"{root} does not exist", details={"path": str(root)})
    base = root.parent if root.is_file() else root
    documents: list[TextDocument] = []
    skipped: dict[str, str] = {}
    for path in _files(root):
        relative = path.relative_to(base).as_posix()
        if path.suffix.lower() not in TEXT_SUFFIXES:
            skipped[relative] = f"not a {'/'.join(sorted(TEXT_SUFFIXES))} file"
            continue
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            skipped[relative] = f"larger than {MAX_FILE_BYTES:,} bytes: {TOO_LONG_HINT}"
            continue
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            skipped[relative] = "not UTF-8 text"
            continue
        if "\x00" in text:  # PostgreSQL text cannot hold NUL; UTF-16 files are full of them
            skipped[relative] = "contains NUL bytes, so it is not plain UTF-8 text (UTF-16? save it as UTF-8)"
            continue
        if len(text) > MAX_CONTENT_CHARS:
            skipped[relative] = (
                f"{len(text):,} characters, more than the {MAX_CONTENT_CHARS:,} a memory row holds: {TOO_LONG_HINT}"
            )
            continue
        if not text.strip():
            skipped[relative] = "empty"
            continue
        documents.append(
            TextDocument(
                relative=relative,
                title=_title(text, path),
                text=text,
                modified=datetime.fromtimestamp(path.stat().st_mtime, UTC),
            )
        )
    return documents, skipped


def import_files(store: MemoryStore, root: Path, *, kind: str = "kb_article") -> ImportReport:
    """source='file', source_id = the relative path: importing the same folder again updates.
    A file that does not fit is skipped with the reason; it never costs the other files."""
    documents, skipped = read_documents(root)
    report = ImportReport(skipped=skipped)
    items: list[MemoryItem] = []
    for doc in documents:
        try:
            items.append(
                MemoryItem(
                    kind=kind,
                    source="file",
                    source_id=doc.relative,
                    title=doc.title,
                    content=doc.text,
                    metadata={"path": doc.relative},
                    occurred_at=doc.modified,
                )
            )
        except ValidationError as exc:
            report.skipped[doc.relative] = "; ".join(
                f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors(include_url=False)
            )
    for start in range(0, len(items), IMPORT_BATCH):
        batch = items[start : start + IMPORT_BATCH]
        try:
            report.add(store.upsert(batch).model_dump())
        except DatabaseError:
            # one call per batch, so nothing of it was written: find the file the database refuses
            # (text it cannot index, say) and keep the others
            for item in batch:
                try:
                    report.add(store.upsert([item]).model_dump())
                except DatabaseError as exc:
                    report.skipped[item.source_id] = f"the database refused it: {exc.message}"
    return report


def sync_knowledge_base(
    store: MemoryStore, knowledge_base: KnowledgeBase, *, source: str = "notion", allow_empty: bool = False
) -> SyncReport:
    """Every page becomes (or updates) one kb_article row; pages gone from the knowledge base are
    forgotten, but only after the whole read succeeded, so a failed sync removes nothing. A read
    that finds no page at all while memory holds some forgets nothing unless `allow_empty`: that
    is far more often lost access than an emptied knowledge base."""
    pages = knowledge_base.read_kb()
    # one odd page (a pasted dump, a NUL PostgreSQL cannot hold) must not stop the whole sync:
    # its text arrives cleaned (KBPage is Storable) and is clipped to what a row holds, and the row says so
    items = [
        MemoryItem(
            kind="kb_article",
            source=source,
            source_id=page.id,
            title=page.title[:1000],
            content=(text if text.strip() else page.title)[:MAX_CONTENT_CHARS],
            metadata={
                "url": page.url,
                "last_edited": page.last_edited.isoformat(),
                **({"clipped_from_chars": len(text)} if len(text) > MAX_CONTENT_CHARS else {}),
            },
            occurred_at=page.last_edited,
        )
        for page in pages
        for text in [page.text]
        if text.strip() or page.title.strip()
    ]
    if not items and not allow_empty:
        held = int(sql.count_memory_source(store.db, source=source)["rows"])
        if held:
            raise InvalidInput(
                f"the knowledge base returned no pages, but memory holds {held} from it: nothing was "
                "forgotten. Check that the Notion integration still has access to the knowledge-base "
                "database (NOTION_KB_DATABASE_ID); if it really is empty now, sync again with --allow-empty.",
                details={"source": source, "rows": held, "pages": len(pages)},
            )
    counts = store.upsert(items)
    removed = store.forget_missing(source, [item.source_id for item in items])
    return SyncReport(**counts.model_dump(), pages=len(pages), removed=removed)
