"""The `notion.blog_draft` action kind: a blog post written as a draft page in Notion.

A draft is not public (publishing stays a person's act in Notion), so the kind adds no risk of its
own: LOW by default, run without approval unless AUTO_RUN_LOW is off.
"""

from __future__ import annotations

from typing import Any

from app.core.settings import Settings
from app.kinds.base import ActionKind
from app.kinds.context import HandlerContext
from integrations.errors import PermanentError
from integrations.notion import SYSTEM, BlogDraft


def create_blog_draft(ctx: HandlerContext) -> dict[str, Any]:
    draft = BlogDraft.model_validate(ctx.action.requested_action)
    database_id = ctx.settings.notion_blog_database_id
    if not database_id:
        raise PermanentError("NOTION_BLOG_DATABASE_ID is not configured", system=SYSTEM)
    notion = ctx.clients.get(Settings.notion_client)
    ctx.heartbeat()
    target = notion.blog_target(database_id, draft)  # reads only: nothing written yet
    ctx.mark_dispatched()
    return notion.create_draft(target, draft, key=ctx.action.idempotency_key, heartbeat=ctx.heartbeat).model_dump(
        mode="json"
    )


NOTION_KINDS: tuple[ActionKind, ...] = (
    ActionKind(
        name="notion.blog_draft",
        description="Create a blog post draft (status Draft) in the Notion database NOTION_BLOG_DATABASE_ID",
        payload_model=BlogDraft,
        handler=create_blog_draft,
        editable=frozenset({"title", "body", "tags"}),
    ),
)
