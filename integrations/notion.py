"""Notion: blog drafts written into NOTION_BLOG_DATABASE_ID, knowledge-base pages read as text.

The SDK speaks API version 2025-09-03 (its default): a database holds data sources, and pages are
created under a data source and queried through it, so every operation starts from
`databases.retrieve` -> `data_sources[].id`.

A draft is idempotent without help from Notion (which has no idempotency keys): the page carries the
action's key in a rich-text property (NOTION_ID_PROPERTY), and every attempt first looks the key
up. An attempt that failed after Notion may have created the page (a timeout, a 5xx, a crash)
therefore finds that page on the next try and only appends the blocks it is missing, since the
blocks are always written in order. A data-source query can lag a page created moments before, so
such a create is not retried in-process: it asks to be tried again after
NOTION_CREATE_RECHECK_SECONDS, longer than any in-process wait, and the executor reschedules it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr, StringConstraints, field_validator

from integrations.errors import IntegrationError, NotConfigured, PermanentError, RateLimited, TransientError
from integrations.notion_blocks import (
    TEXT_LIMIT,
    Block,
    block_text,
    body_blocks,
    plain_text,
    property_text,
    request_batches,
    rich_text,
)
from integrations.resilience import CircuitBreaker, call_with_retries, parse_retry_after
from integrations.untrusted import Storable

SYSTEM = "notion"
DEFAULT_BASE_URL = "https://api.notion.com"
PAGE_SIZE = 100
KB_DEPTH = 3  # nested block levels read below a page

R = TypeVar("R")

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^,]+$")]


class NotionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = Field(30.0, gt=0)
    max_attempts: PositiveInt = 3
    # a create that may have reached Notion is looked for after this long, once the data source shows it
    create_recheck_seconds: float = Field(60.0, gt=30)
    # the blog database's properties a draft writes
    title_property: str = Field("Name", min_length=1)
    tags_property: str = Field("Tags", min_length=1)
    status_property: str = Field("Status", min_length=1)
    draft_status: str = Field("Draft", min_length=1)
    id_property: str = Field("opsdesk_id", min_length=1)  # rich_text: finds a page after a retry
    kb_database_id: str | None = None  # the knowledge base `read_kb` reads by default


class BlogDraft(BaseModel):
    """A blog post draft (the `notion.blog_draft` payload). The body is markdown-ish text."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=TEXT_LIMIT)
    body: str = Field(min_length=1, max_length=200_000)
    tags: list[Tag] = Field(default_factory=list, max_length=100)  # a multi-select takes 100 options

    @field_validator("tags")
    @classmethod
    def _distinct(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))


class BlogTarget(BaseModel):
    """Where drafts go, checked against the data source's properties before anything is written."""

    database_id: str
    data_source_id: str
    status_type: Literal["status", "select"]


class DraftPage(BaseModel):
    page_id: str
    url: str
    created: bool  # False: an earlier attempt had created it
    blocks: int


class KBPage(Storable):  # a page's text is whatever was pasted into Notion
    id: str
    title: str
    url: str
    text: str
    last_edited: datetime


# --- the client ----------------------------------------------------------------------------------
def as_integration_error(exc: Exception) -> IntegrationError:
    """The SDK's (and httpx's) errors as ours."""
    from notion_client.errors import HTTPResponseError, RequestTimeoutError  # loaded: an SDK call failed

    if isinstance(exc, RequestTimeoutError):
        return TransientError("timed out", system=SYSTEM)
    if isinstance(exc, HTTPResponseError):
        code = getattr(exc.code, "value", exc.code)
        message = f"HTTP {exc.status} {code}: {exc}"[:300]
        if exc.status == 429:
            return RateLimited(message, system=SYSTEM, retry_after=parse_retry_after(exc.headers.get("retry-after")))
        if exc.status >= 500 or exc.status == 409:  # 409 conflict_error: a write collided; try again
            return TransientError(message, system=SYSTEM, retry_after=parse_retry_after(exc.headers.get("retry-after")))
        return PermanentError(message, system=SYSTEM)
    if isinstance(exc, httpx.TransportError):
        return TransientError(f"connection failed ({type(exc).__name__})", system=SYSTEM)
    return PermanentError(f"{type(exc).__name__}: {exc}", system=SYSTEM)


def may_have_applied(exc: Exception) -> bool:
    """Whether a failed write may still have been carried out: no answer, or a server error."""
    from notion_client.errors import HTTPResponseError, RequestTimeoutError  # loaded: an SDK call failed

    if isinstance(exc, RequestTimeoutError):
        return True
    if isinstance(exc, HTTPResponseError):
        return exc.status >= 500
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


class NotionClient:
    def __init__(
        self,
        config: NotionConfig,
        *,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # the SDK loads with the first client, not with the drafts' and pages' types
        from notion_client import Client
        from notion_client.errors import NotionClientErrorBase

        self.config = config
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        self._sleep = sleep
        self._errors: tuple[type[Exception], ...] = (NotionClientErrorBase, httpx.HTTPError)
        # Any: the SDK types every call as `dict | Awaitable[dict]` (one class serves sync and async);
        # this client is the sync one, and each answer is read as the plain dict it is
        self._client: Any = Client(
            auth=config.api_key.get_secret_value(),
            base_url=config.base_url,
            timeout_ms=round(config.timeout_seconds * 1000),
            retry=False,  # integrations.resilience retries, with the breaker and our backoff
            logger=logging.getLogger("notion_client"),  # the SDK's default logger prints to stdout
        )

    def close(self) -> None:
        self._client.close()

    def _once(self, request: Callable[[], R]) -> R:
        try:
            return request()
        except self._errors as exc:
            raise as_integration_error(exc) from exc

    def _retried(self, request: Callable[[], R]) -> R:
        return call_with_retries(
            lambda: self._once(request),
            breaker=self.breaker,
            attempts=self.config.max_attempts,
            sleep=self._sleep,
        )

    def _paginated(self, fetch: Callable[[str | None], Block], *, retried: bool = True) -> Iterator[Block]:
        """Every result of a paginated read; each page retried on its own unless the caller's
        whole operation is the retried unit."""
        cursor: str | None = None
        while True:
            page = partial(fetch, cursor)
            answer = self._retried(page) if retried else self._once(page)
            yield from answer.get("results") or []
            cursor = answer.get("next_cursor")
            if not answer.get("has_more") or not cursor:
                return

    def _data_source_ids(self, database_id: str) -> list[str]:
        database = self._retried(lambda: self._client.databases.retrieve(database_id=database_id))
        ids = [source["id"] for source in database.get("data_sources") or []]
        if not ids:
            raise PermanentError(f"database {database_id} has no data source the integration can see", system=SYSTEM)
        return ids

    # --- blog drafts --------------------------------------------------------------------------
    def blog_target(self, database_id: str, draft: BlogDraft) -> BlogTarget:
        """Find the database's data source and check that the properties this draft writes exist
        with the right types. Reads only: safe before the action is marked dispatched."""
        data_source_id = self._data_source_ids(database_id)[0]
        source = self._retried(lambda: self._client.data_sources.retrieve(data_source_id=data_source_id))
        types = {name: prop.get("type") for name, prop in (source.get("properties") or {}).items()}
        c = self.config
        wanted = {
            c.title_property: ("title",),
            c.id_property: ("rich_text",),
            c.status_property: ("status", "select"),
        }
        if draft.tags:
            wanted[c.tags_property] = ("multi_select",)
        wrong = [
            f"{name} ({' or '.join(kinds)}, found {types.get(name) or 'none'})"
            for name, kinds in wanted.items()
            if types.get(name) not in kinds
        ]
        if wrong:
            raise PermanentError(
                f"the blog database lacks properties drafts need: {', '.join(wrong)}; add them in Notion "
                "or set NOTION_*_PROPERTY",
                system=SYSTEM,
                details={"properties": types},
            )
        return BlogTarget(database_id=database_id, data_source_id=data_source_id, status_type=types[c.status_property])

    def create_draft(
        self, target: BlogTarget, draft: BlogDraft, *, key: str, heartbeat: Callable[[], None] | None = None
    ) -> DraftPage:
        """Create the draft page (or finish the one an earlier attempt created). `heartbeat` runs
        before each request (the executor's lease renewal)."""
        blocks = body_blocks(draft.body)
        first = next(request_batches(blocks), [])
        made: list[Block] = []  # the page this call created, so a later try need not find it again
        beat = heartbeat or (lambda: None)

        def attempt() -> DraftPage:
            beat()
            page = made[0] if made else self._find_draft(target, key)
            if page is None:
                beat()
                page = self._create_page(target, draft, key, first)
                made.append(page)
                present = len(first)
            else:
                present = sum(1 for _ in self._children(page["id"], retried=False))
            for batch in request_batches(blocks[present:]):
                beat()
                self._once(partial(self._client.blocks.children.append, block_id=page["id"], children=batch))
            return DraftPage(page_id=page["id"], url=page.get("url") or "", created=bool(made), blocks=len(blocks))

        # retried as a whole: each attempt looks its page up again before writing anything
        return call_with_retries(attempt, breaker=self.breaker, attempts=self.config.max_attempts, sleep=self._sleep)

    def _create_page(self, target: BlogTarget, draft: BlogDraft, key: str, children: list[Block]) -> Block:
        try:
            page: Block = self._client.pages.create(
                parent={"type": "data_source_id", "data_source_id": target.data_source_id},
                properties=self._draft_properties(target, draft, key),
                children=children,
            )
        except self._errors as exc:
            if not may_have_applied(exc):
                raise as_integration_error(exc) from exc
            wait = self.config.create_recheck_seconds
            why = as_integration_error(exc).message.removeprefix(f"{SYSTEM}: ")
            raise TransientError(
                f"creating the page failed ({why}); it may have been created, "
                f"so the next attempt first looks for it (in {wait:g} s, once the data source shows it)",
                system=SYSTEM,
                retry_after=wait,
                details={"may_have_applied": True},
            ) from exc
        return page

    def _draft_properties(self, target: BlogTarget, draft: BlogDraft, key: str) -> Block:
        c = self.config
        properties: Block = {
            c.title_property: {"title": rich_text(draft.title)},
            c.id_property: {"rich_text": rich_text(key)},
            c.status_property: {target.status_type: {"name": c.draft_status}},
        }
        if draft.tags:
            properties[c.tags_property] = {"multi_select": [{"name": tag} for tag in draft.tags]}
        return properties

    def _find_draft(self, target: BlogTarget, key: str) -> Block | None:
        answer = self._once(
            lambda: self._client.data_sources.query(
                data_source_id=target.data_source_id,
                filter={"property": self.config.id_property, "rich_text": {"equals": key}},
                page_size=1,
            )
        )
        results = answer.get("results") or []
        return results[0] if results else None

    def _children(self, block_id: str, *, retried: bool = True) -> Iterator[Block]:
        return self._paginated(
            lambda cursor: self._client.blocks.children.list(
                block_id=block_id, start_cursor=cursor, page_size=PAGE_SIZE
            ),
            retried=retried,
        )

    # --- the knowledge base -------------------------------------------------------------------
    def read_kb(self, database_id: str | None = None, *, edited_since: datetime | None = None) -> list[KBPage]:
        """Every page of the knowledge-base database (NOTION_KB_DATABASE_ID), optionally only those
        edited since a time, as plain text: properties first, then the blocks."""
        database_id = database_id or self.config.kb_database_id
        if not database_id:
            raise NotConfigured("NOTION_KB_DATABASE_ID is not set", system=SYSTEM)
        query: Block = {"page_size": PAGE_SIZE}
        if edited_since is not None:
            query["filter"] = {
                "timestamp": "last_edited_time",
                "last_edited_time": {"on_or_after": edited_since.isoformat()},
            }
        pages: list[KBPage] = []
        for source_id in self._data_source_ids(database_id):

            def query_page(cursor: str | None, source_id: str = source_id) -> Block:
                answer: Block = self._client.data_sources.query(data_source_id=source_id, start_cursor=cursor, **query)
                return answer

            for page in self._paginated(query_page):
                if page.get("object") == "page":
                    pages.append(self._kb_page(page))
        return pages

    def _kb_page(self, page: Block) -> KBPage:
        properties = page.get("properties") or {}
        title = next((plain_text(prop.get("title")) for prop in properties.values() if prop.get("type") == "title"), "")
        lines = [
            f"{name}: {text}"
            for name, prop in properties.items()
            if prop.get("type") != "title" and (text := property_text(prop))
        ]
        body = self._block_lines(page["id"], depth=0)
        text = "\n".join([*lines, *([""] if lines and body else []), *body])
        return KBPage(
            id=page["id"], title=title, url=page.get("url") or "", text=text, last_edited=page["last_edited_time"]
        )

    def _block_lines(self, block_id: str, depth: int) -> list[str]:
        lines: list[str] = []
        for block in self._children(block_id):
            if text := block_text(block):
                lines.append("  " * depth + text)
            # child pages and databases are pages of their own, not this page's text
            if (
                block.get("has_children")
                and depth + 1 < KB_DEPTH
                and block.get("type") not in ("child_page", "child_database")
            ):
                lines.extend(self._block_lines(block["id"], depth + 1))
        return lines
