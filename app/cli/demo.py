"""`opsdesk demo`: a guided first run with no outside account, and `opsdesk demo --remove`.

It puts a few example knowledge-base articles in memory and submits sample plans of every tier
through the real queue and risk policy (app.cli.demo_data), then prints where to look: a review
page, the inbox, a report, a memory search. Everything it adds is marked DEMO on every page and
listed in the database (`demo_actions`, memory's source `opsdesk-demo`), so `--remove` removes
exactly that."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.context import actor, console, database


def demo_command(
    remove: Annotated[bool, typer.Option("--remove", help="Remove every demo row, and nothing else")] = False,
) -> None:
    """Load example articles and draft example actions of every tier: no outside account needed."""
    # the stack loads with the command, not with `opsdesk --help`
    from app.approvals.links import LinkSigner
    from app.approvals.queue import ApprovalQueue
    from app.cli import sql
    from app.cli.demo_data import ARTICLES, DEMO_AGENT, DEMO_SOURCE, MARK, PLANS, reasoning_of, summary_of
    from app.core.models import ActionMetadata, ActionRecord, ActionRequest, Status, Tier
    from app.memory.models import MemoryItem
    from app.memory.store import MemoryStore

    with database() as (settings, db):
        if remove:
            removed = sql.demo_remove(db, actor=actor(None))
            console.print(
                f"removed the demo: {removed['actions']} action(s), {removed['notes']} note(s), "
                f"{removed['articles']} article(s), {removed['remembered']} memory row(s) of its actions "
                "(the audit log keeps their trail, each closed by a demo_removed row)"
            )
            return
        store = MemoryStore(db, settings)
        try:
            store.upsert(
                MemoryItem(
                    kind="kb_article",
                    source=DEMO_SOURCE,
                    source_id=article.slug,
                    title=f"{MARK} — {article.title}",
                    content=article.body,
                    metadata={"demo": True},
                )
                for article in ARTICLES
            )
        finally:
            store.close()
        queue = ApprovalQueue(db, settings)
        results = [
            queue.submit(
                ActionRequest(
                    agent=DEMO_AGENT,
                    kind="note.record",
                    summary=summary_of(plan),
                    reasoning=reasoning_of(plan),
                    payload={"body": plan.draft, "metadata": {"demo": True, "drafted_as": plan.drafted_as}},
                    impact=plan.impact,
                    task_type=f"demo.{plan.slot}",
                    dedupe_key=f"demo/{plan.slot}",
                    metadata=ActionMetadata.model_validate({"demo": True, "drafted_as": plan.drafted_as}),
                ),
                actor=actor(None),
            )
            for plan in PLANS
        ]
        sql.demo_mark(db, ids=[str(result.id) for result in results])
        table = Table(title=f"{MARK}: {len(ARTICLES)} article(s) in memory, {len(results)} action(s)")
        for column in ("tier", "status", "summary"):
            table.add_column(column)
        for plan, result in zip(PLANS, results, strict=True):
            table.add_row(result.risk_tier.value, result.status.value, escape(plan.summary))
        console.print(table)
        pending = [result for result in results if result.status is Status.PENDING]
        signer = LinkSigner(settings)
        now = queue.clock()
        top = max(pending, key=lambda result: list(Tier).index(result.risk_tier), default=None)
        review, top_tier = None, ""
        if top is not None:
            top_tier = top.risk_tier.value
            record = ActionRecord.model_validate(queue.get(top.id))
            review = signer.url(record.id, record.draft_hash, "review", record.expires_at or now + timedelta(hours=1))
        inbox = signer.inbox_url(now + timedelta(hours=settings.inbox_link_hours))
    console.print("\nWith the service running (`opsdesk run`), open:")
    if review is not None:
        console.print(f"  the review page of a {top_tier} action:", soft_wrap=True)
        console.print(f"    {review}", soft_wrap=True, highlight=False)
    console.print("  every pending action at once (the inbox):", soft_wrap=True)
    console.print(f"    {inbox}", soft_wrap=True, highlight=False)
    console.print("and try:  opsdesk approvals list   opsdesk report   opsdesk memory search refund")
    console.print("Remove it all with:  opsdesk demo --remove")
