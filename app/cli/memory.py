"""`opsdesk memory ...`: search, import, sync, embed, reindex, prune and status, from a terminal."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from app.cli.context import console, database
from app.core.errors import ConfigError, InvalidInput
from app.core.settings import ClientDeps
from app.memory.models import KIND_PATTERN, EmbedReport, SearchAnswer, SearchMode
from app.memory.retention import prune
from app.memory.sources import import_files, sync_knowledge_base
from app.memory.store import MemoryStore

memory_app = typer.Typer(help="Memory: search it, feed it, re-embed it, prune it.", no_args_is_help=True)
_MARK = re.compile(r"<mark>(.*?)</mark>", re.DOTALL)


@contextmanager
def _store(*, check_memory: bool = True) -> Iterator[MemoryStore]:
    with database(check_memory=check_memory) as (settings, db):
        store = MemoryStore(db, settings)
        try:
            yield store
        finally:
            store.close()


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _maintain_with_progress(store: MemoryStore) -> None:
    """Make the missing HNSW indexes: vectors parked and filled back in batches, each a short call."""
    stats = store.stats()
    if not stats["missing_indexes"] and not stats["parked"]:
        return
    with _progress() as progress:
        task = progress.add_task(f"vector index ({', '.join(stats['missing_indexes']) or 'filling'})", total=None)
        store.maintain_indexes(progress=lambda step: progress.advance(task, int(step.get("rows", 1))))


def _embed_with_progress(store: MemoryStore) -> EmbedReport:
    if store.spec is None:
        console.print("[dim]no embeddings (EMBEDDINGS_PROVIDER is none): full-text search only[/dim]")
        return EmbedReport()
    _maintain_with_progress(store)
    waiting = int(store.stats()["to_embed"])
    with _progress() as progress:
        task = progress.add_task(f"embedding with {store.spec.name}", total=waiting)
        report = store.embed_pending(progress=lambda done: progress.advance(task, done))
    _maintain_with_progress(store)
    return report


def snippet_text(snippet: str) -> Text:
    """The API's snippet (HTML-escaped, matches in <mark>) as Rich text, matches highlighted;
    never parsed as Rich markup, since it is stored text."""
    text = Text()
    position = 0
    for match in _MARK.finditer(snippet):
        text.append(html.unescape(snippet[position : match.start()]))
        text.append(html.unescape(match.group(1)), style="bold yellow")
        position = match.end()
    text.append(html.unescape(snippet[position:]))
    return text


def print_answer(answer: SearchAnswer) -> None:
    title = f"{len(answer.results)} result(s) for {answer.query!r} — {answer.mode}"
    if answer.mode != answer.requested_mode:
        title += f" (asked {answer.requested_mode})"
    table = Table(title=title, show_lines=True)
    for column, justify in (
        ("#", "right"),
        ("score", "right"),
        ("kind", "left"),
        ("source", "left"),
        ("fts", "right"),
        ("vec", "right"),
        ("snippet", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for number, hit in enumerate(answer.results, 1):
        cell = Text(hit.title + "\n", style="bold") if hit.title else Text()
        cell.append_text(snippet_text(hit.snippet))
        table.add_row(
            str(number),
            f"{hit.score:.4f}",
            hit.kind,
            Text(f"{hit.source}:{hit.source_id}"),
            str(hit.fts_rank or "-"),
            str(hit.vector_rank or "-"),
            cell,
        )
    console.print(table)
    for notice in answer.notices:
        console.print(Text(f"note: {notice}", style="yellow"))


@memory_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help='websearch syntax: "exact phrase", or, -word; ship* for a prefix')],
    mode: Annotated[SearchMode | None, typer.Option(help="fts, vector or hybrid (default)")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only this kind (repeatable)")] = None,
    since: Annotated[datetime | None, typer.Option(help="Occurred at or after (date or date-time)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON answer")] = False,
) -> None:
    """Search memory: the same answer as GET /memory/search, as a table."""
    with _store() as store:
        answer = store.search(query, mode=mode, kinds=kind or [], since=since, limit=limit)
    if as_json:
        console.print_json(answer.model_dump_json())
    else:
        print_answer(answer)


@memory_app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="A Markdown/text file, or a folder of them")],
    kind: Annotated[str, typer.Option(help="The kind the files become")] = "kb_article",
    embed: Annotated[bool, typer.Option("--embed/--no-embed", help="Embed the new text now")] = True,
) -> None:
    """Import .md/.markdown/.txt files; source_id is the path relative to PATH, so importing
    again updates the same rows."""
    if not re.fullmatch(KIND_PATTERN, kind):
        raise InvalidInput(f"--kind {kind!r} is not a memory kind (lower-case letters, digits and _)")
    with _store() as store:
        report = import_files(store, path, kind=kind)
        console.print(
            f"[green]{report.created} created[/green], {report.updated} updated, "
            f"{report.unchanged} unchanged, {len(report.skipped)} skipped"
        )
        for name, why in report.skipped.items():
            console.print(Text(f"  skipped {name}: {why}", style="dim"))
        if embed:
            _embed_with_progress(store)


@memory_app.command("sync-notion")
def sync_notion(
    embed: Annotated[bool, typer.Option("--embed/--no-embed", help="Embed the new text now")] = True,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Forget every synced page when Notion lists none (refused otherwise)")
    ] = False,
) -> None:
    """Sync the knowledge base from Notion (NOTION_KB_DATABASE_ID): every page one kb_article;
    pages deleted in Notion are forgotten."""
    with _store() as store:
        notion = store.settings.notion_client(ClientDeps())  # the SDK loads only when syncing
        try:
            report = sync_knowledge_base(store, notion, allow_empty=allow_empty)
        finally:
            notion.close()
        console.print(
            f"{report.pages} page(s): [green]{report.created} created[/green], {report.updated} "
            f"updated, {report.unchanged} unchanged, {report.removed} removed"
        )
        if embed:
            _embed_with_progress(store)


@memory_app.command("embed")
def embed_pending() -> None:
    """Embed every row still waiting for a vector (the service does this every minute)."""
    with _store() as store:
        report = _embed_with_progress(store)
    console.print(f"{report.embedded} embedded" + (f", {report.stale} changed meanwhile" if report.stale else ""))


@memory_app.command("reindex")
def reindex(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Re-embed all memory with the configured provider: the way to change model or dimension.
    Vector search finds only the rows done so far until it finishes. Run again after an
    interruption: a reindex to the same model carries on where it stopped."""
    with _store(check_memory=False) as store:
        if store.spec is None:
            raise ConfigError("reindexing needs an embeddings provider: EMBEDDINGS_PROVIDER is none")
        current = store.stats()
        if current.get("reindex_started_at") and (current["model"], current["dimension"]) == (
            store.spec.name,
            store.spec.dimension,
        ):
            console.print(
                f"memory: {current['rows']} row(s); carrying on with the reindex to {store.spec.name} "
                f"begun {current['reindex_started_at']} ({current['to_embed']} row(s) to go)"
            )
        else:
            console.print(
                f"memory: {current['rows']} row(s), embedded with {current['model'] or 'nothing yet'}; "
                f"re-embedding with {store.spec.name} ({store.spec.dimension} dimensions)"
            )
            if not yes and not typer.confirm("Forget every vector and embed again?"):
                raise typer.Abort()
        with _progress() as progress:
            task = progress.add_task(f"re-embedding with {store.spec.name}", total=None)
            report = store.reindex(
                started=lambda total: progress.update(task, total=total),
                progress=lambda done: progress.advance(task, done),
            )
    console.print(f"[green]{report.embedded} row(s) embedded[/green] with {report.model}; HNSW indexes complete")


@memory_app.command("prune")
def prune_() -> None:
    """Archive (gzip JSON lines under the archive folder) and delete memory and audit rows past
    their retention (MEMORY_RETENTION_DAYS, AUDIT_RETENTION_DAYS)."""
    with _store() as store:
        report = prune(store.db, store.settings)
    if report.skipped:
        console.print(f"[yellow]skipped[/yellow]: {report.skipped}")
        return
    if not report.archived:
        console.print("nothing is past its retention")
    for name, rows in report.archived.items():
        console.print(f"{name}: {rows} row(s) archived and deleted")
    for file in report.files:
        console.print(Text(f"  {file}", style="dim"))


@memory_app.command("status")
def status() -> None:
    """The model memory is embedded with, rows per kind, and what still waits for a vector."""
    with _store() as store:
        stats = store.stats()
        provider = store.spec.name if store.spec else "none"
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("embeddings provider", provider)
    table.add_row("database model", f"{stats['model'] or '-'} ({stats['dimension'] or '-'} dimensions)")
    table.add_row("HNSW index", "yes" if stats["index"] else "being made: search is full text meanwhile")
    if stats["missing_indexes"] or stats["parked"]:
        table.add_row("  still to make", ", ".join(stats["missing_indexes"]) or "-")
        table.add_row("  vectors set aside", str(stats["parked"]))
    table.add_row("rows", str(stats["rows"]))
    table.add_row("waiting for a vector", str(stats["to_embed"]))
    for kind, count in sorted(stats["kinds"].items()):
        table.add_row(f"  {kind}", str(count))
    console.print(table)
