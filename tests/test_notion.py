"""Notion: the real notion-client SDK against a local fake that speaks API version 2025-09-03
(databases holding data sources), enforcing Notion's request limits the way the API does."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.database import Database
from app.core.models import ActionRequest
from app.core.settings import Settings
from app.kinds.context import idempotency_key
from integrations.errors import CircuitOpen, PermanentError, TransientError
from integrations.notion import BlogDraft, NotionClient
from integrations.notion_blocks import body_blocks, text_pieces
from integrations.resilience import CircuitBreaker
from tests.conftest import advance_clock, make_settings
from tests.fake_http import FakeServer, Recorded, Reply

TOKEN = "ntn_4628abcdef0123456789abcdef0123456789abcdef"
BLOG_DB = "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"
BLOG_DS = "248104cd-477e-80af-bc30-000bd28de8f9"
KB_DB = "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"
KB_DS = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
REQUEST_CAP = 500_000  # Notion refuses bodies over 500 KB


def notion_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status,
        {"object": "error", "status": status, "code": code, "message": message, "request_id": str(uuid.uuid4())},
        headers=headers or {},
    )


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def limit_problem(blocks: list[dict[str, Any]]) -> str | None:
    """What Notion's validation would say about these children, if anything."""
    if len(blocks) > 100:
        return f"body.children.length should be ≤ `100`, instead was `{len(blocks)}`."
    for block in blocks:
        items = block.get(block["type"], {}).get("rich_text", [])
        if len(items) > 100:
            return f"body.children.rich_text.length should be ≤ `100`, instead was `{len(items)}`."
        for item in items:
            if utf16_len(item["text"]["content"]) > 2000:
                return "body.children.rich_text.text.content.length should be ≤ `2000`."
    return None


BLOG_PROPERTIES = {
    "Name": {"id": "title", "name": "Name", "type": "title", "title": {}},
    "Tags": {"id": "a%3Bb", "name": "Tags", "type": "multi_select", "multi_select": {"options": []}},
    "Status": {"id": "s%3Dt", "name": "Status", "type": "status", "status": {"options": [{"name": "Draft"}]}},
    "opsdesk_id": {"id": "o%5Ei", "name": "opsdesk_id", "type": "rich_text", "rich_text": {}},
}


class FakeNotion:
    def __init__(self) -> None:
        self.databases = {BLOG_DB: [BLOG_DS], KB_DB: [KB_DS]}
        self.properties: dict[str, dict[str, Any]] = {BLOG_DS: copy.deepcopy(BLOG_PROPERTIES), KB_DS: {}}
        self.pages: dict[str, dict[str, Any]] = {}  # id -> page object
        self.children: dict[str, list[dict[str, Any]]] = {}  # block or page id -> child blocks
        self.page_cap = 100  # results per page of a paginated read
        self.faults: list[Callable[[Recorded], Reply | None]] = []  # asked first, in order
        self.lagging = False  # pages created meanwhile stay out of data-source queries...
        self.unindexed: set[str] = set()  # ...until a test clears this, as Notion catches up
        self.lock = threading.Lock()
        self.server = FakeServer(self.respond)

    # --- helpers for tests ------------------------------------------------------------------
    def requests(self, method: str, prefix: str) -> list[Recorded]:
        return [r for r in self.server.requests if r.method == method and r.path.startswith(prefix)]

    def pages_in(self, data_source: str) -> list[dict[str, Any]]:
        return [p for p in self.pages.values() if p["parent"]["data_source_id"] == data_source]

    def add_page(
        self,
        data_source: str,
        properties: dict[str, Any],
        blocks: list[dict[str, Any]],
        edited: str = "2026-11-20T16:00:00.000Z",
    ) -> str:
        page_id = str(uuid.uuid4())
        self.pages[page_id] = {
            "object": "page",
            "id": page_id,
            "created_time": edited,
            "last_edited_time": edited,
            "url": f"https://www.notion.so/{page_id.replace('-', '')}",
            "in_trash": False,
            "parent": {"type": "data_source_id", "data_source_id": data_source},
            "properties": properties,
        }
        self.children[page_id] = self._stored(blocks)
        return page_id

    def _stored(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        stored = []
        for block in blocks:
            nested = block.pop("children", None)
            block = {"object": "block", "id": str(uuid.uuid4()), "has_children": bool(nested), **block}
            for item in block.get(block["type"], {}).get("rich_text", []):
                item.setdefault("plain_text", item["text"]["content"])
            if nested:
                self.children[block["id"]] = self._stored(nested)
            stored.append(block)
        return stored

    def _paged(self, results: list[dict[str, Any]], cursor: str | None, size: int | None) -> Reply:
        start = int(cursor) if cursor else 0
        end = start + min(size or 100, self.page_cap)
        more = end < len(results)
        return Reply(
            200,
            {
                "object": "list",
                "results": results[start:end],
                "has_more": more,
                "next_cursor": str(end) if more else None,
                "type": "page_or_data_source",
            },
        )

    # --- the API ----------------------------------------------------------------------------
    def respond(self, request: Recorded) -> Reply:
        for fault in list(self.faults):
            if (reply := fault(request)) is not None:
                return reply
        if request.headers.get("notion-version") != "2025-09-03":
            return notion_error(400, "missing_version", "Notion-Version header failed validation.")
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return notion_error(401, "unauthorized", "API token is invalid.")
        if len(request.body) > REQUEST_CAP:
            return notion_error(413, "validation_error", "Request body too large.")
        with self.lock:
            return self.route(request)

    def route(self, request: Recorded) -> Reply:
        url = urlsplit(request.path)
        parts = url.path.strip("/").split("/")[1:]  # after v1
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        body = request.json() if request.body else {}
        match request.method, parts:
            case "GET", ["databases", database_id] if database_id in self.databases:
                return Reply(
                    200,
                    {
                        "object": "database",
                        "id": database_id,
                        "title": [],
                        "data_sources": [{"id": ds, "name": "Posts"} for ds in self.databases[database_id]],
                    },
                )
            case "GET", ["data_sources", source] if source in self.properties:
                return Reply(200, {"object": "data_source", "id": source, "properties": self.properties[source]})
            case "POST", ["data_sources", source, "query"] if source in self.properties:
                pages = self.pages_in(source)
                wanted = body.get("filter") or {}
                pages = [p for p in pages if p["id"] not in self.unindexed]
                if "rich_text" in wanted:
                    pages = [
                        p
                        for p in pages
                        if "".join(
                            item["text"]["content"]
                            for item in p["properties"].get(wanted["property"], {}).get("rich_text", [])
                        )
                        == wanted["rich_text"]["equals"]
                    ]
                elif "last_edited_time" in wanted:
                    pages = [p for p in pages if p["last_edited_time"] >= wanted["last_edited_time"]["on_or_after"]]
                return self._paged(pages, body.get("start_cursor"), body.get("page_size"))
            case "POST", ["pages"]:
                if problem := limit_problem(body.get("children", [])):
                    return notion_error(400, "validation_error", problem)
                page_id = self.add_page(body["parent"]["data_source_id"], body["properties"], body.get("children", []))
                if self.lagging:
                    self.unindexed.add(page_id)
                return Reply(200, self.pages[page_id])
            case "PATCH", ["blocks", block_id, "children"] if block_id in self.children:
                if problem := limit_problem(body["children"]):
                    return notion_error(400, "validation_error", problem)
                added = self._stored(body["children"])
                self.children[block_id].extend(added)
                return Reply(200, {"object": "list", "results": added, "has_more": False, "next_cursor": None})
            case "GET", ["blocks", block_id, "children"] if block_id in self.children:
                return self._paged(self.children[block_id], query.get("start_cursor"), int(query.get("page_size", 100)))
        return notion_error(404, "object_not_found", f"Could not find object at {url.path}.")

    def text_of(self, page_id: str) -> list[str]:
        return [
            "".join(i["text"]["content"] for i in b.get(b["type"], {}).get("rich_text", []))
            for b in self.children[page_id]
        ]


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    fake = FakeNotion()
    with fake.server:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def notion_settings(fake: FakeNotion, database_url: str) -> Settings:
    return make_settings(
        database_url=database_url,
        notion_api_key=TOKEN,
        notion_base_url=fake.server.url,
        notion_blog_database_id=BLOG_DB,
        notion_kb_database_id=KB_DB,
        notion_timeout_seconds=2,
    )


@pytest.fixture
def notion_for(fake: FakeNotion, sleeps: list[float]) -> Iterator[Callable[..., NotionClient]]:
    made: list[NotionClient] = []

    def make(breaker: CircuitBreaker | None = None, **overrides: Any) -> NotionClient:
        settings = make_settings(
            notion_api_key=TOKEN,
            notion_base_url=fake.server.url,
            notion_blog_database_id=BLOG_DB,
            notion_kb_database_id=KB_DB,
            **overrides,
        )
        client = NotionClient(settings.notion_config(), breaker=breaker, sleep=sleeps.append)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


DRAFT = BlogDraft(
    title="Monsoon season: keeping deliveries on time",
    body="# Why it matters\n\nStorms close roads.\nWe plan ahead.\n\n- Track alerts\n- Call ahead",
    tags=["logistics", "phoenix", "logistics"],
)


def publish(client: NotionClient, draft: BlogDraft = DRAFT, key: str = "key-1") -> Any:
    return client.create_draft(client.blog_target(BLOG_DB, draft), draft, key=key)


# --- blog drafts ----------------------------------------------------------------------------------
def test_a_draft_page_is_created_under_the_data_source_with_its_properties(
    notion_for: Callable[..., NotionClient], fake: FakeNotion
) -> None:
    page = publish(notion_for())
    assert page.created and page.blocks == 4
    [create] = fake.requests("POST", "/v1/pages")
    body = create.json()
    assert body["parent"] == {"type": "data_source_id", "data_source_id": BLOG_DS}
    assert body["properties"] == {
        "Name": {"title": [{"type": "text", "text": {"content": DRAFT.title}}]},
        "opsdesk_id": {"rich_text": [{"type": "text", "text": {"content": "key-1"}}]},
        "Status": {"status": {"name": "Draft"}},
        "Tags": {"multi_select": [{"name": "logistics"}, {"name": "phoenix"}]},
    }
    assert [b["type"] for b in body["children"]] == [
        "heading_1",
        "paragraph",
        "bulleted_list_item",
        "bulleted_list_item",
    ]
    assert fake.text_of(page.page_id) == [
        "Why it matters",
        "Storms close roads.\nWe plan ahead.",
        "Track alerts",
        "Call ahead",
    ]
    # every request: the token and the data-source API version; the discovery reads come first
    assert all(r.headers["notion-version"] == "2025-09-03" for r in fake.server.requests)
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fake.server.requests)
    assert [(r.method, urlsplit(r.path).path) for r in fake.server.requests][:3] == [
        ("GET", f"/v1/databases/{BLOG_DB}"),
        ("GET", f"/v1/data_sources/{BLOG_DS}"),
        ("POST", f"/v1/data_sources/{BLOG_DS}/query"),
    ]


def test_a_select_status_property_is_written_as_a_select(
    notion_for: Callable[..., NotionClient], fake: FakeNotion
) -> None:
    fake.properties[BLOG_DS]["Status"] = {"id": "s", "name": "Status", "type": "select", "select": {"options": []}}
    publish(notion_for())
    assert fake.requests("POST", "/v1/pages")[0].json()["properties"]["Status"] == {"select": {"name": "Draft"}}


def test_missing_properties_are_refused_before_anything_is_written(
    notion_for: Callable[..., NotionClient], fake: FakeNotion
) -> None:
    del fake.properties[BLOG_DS]["opsdesk_id"]
    del fake.properties[BLOG_DS]["Tags"]
    fake.properties[BLOG_DS]["Status"]["type"] = "rich_text"
    with pytest.raises(
        PermanentError,
        match=r"opsdesk_id \(rich_text, found none\).*Status \(status or select.*"
        r"Tags \(multi_select",
    ):
        publish(notion_for())
    assert fake.requests("POST", "/v1/pages") == []
    # without tags to write, a database without a Tags property is fine
    fake.properties[BLOG_DS] = copy.deepcopy(BLOG_PROPERTIES)
    del fake.properties[BLOG_DS]["Tags"]
    assert publish(notion_for(), DRAFT.model_copy(update={"tags": []})).created


def test_text_is_cut_under_notions_limits() -> None:
    assert [utf16_len(p) for p in text_pieces("x" * 4500)] == [2000, 2000, 500]
    # characters outside the BMP count twice, as in Notion's JavaScript
    assert [utf16_len(p) for p in text_pieces("😀" * 1500)] == [2000, 1000]
    # a paragraph needing more than 100 rich-text items becomes several paragraphs
    blocks = body_blocks("y" * 250_000)
    assert [len(b["paragraph"]["rich_text"]) for b in blocks] == [100, 25]
    assert "".join(i["text"]["content"] for b in blocks for i in b["paragraph"]["rich_text"]) == "y" * 250_000


def test_a_very_long_body_is_created_then_appended_in_requests_within_the_limits(
    notion_for: Callable[..., NotionClient], fake: FakeNotion
) -> None:
    paragraphs = [f"Paragraph {n}: " + " ".join(["Phoenix heat and careful planning."] * 20) for n in range(230)]
    page = publish(notion_for(), BlogDraft(title="Long", body="\n\n".join(paragraphs)))
    assert page.blocks == 230
    sizes = [len(r.json()["children"]) for r in fake.requests("POST", "/v1/pages")] + [
        len(r.json()["children"]) for r in fake.requests("PATCH", "/v1/blocks/")
    ]
    assert sizes == [100, 100, 30]
    assert fake.text_of(page.page_id) == paragraphs


def test_a_body_of_wide_characters_is_split_by_request_size(
    notion_for: Callable[..., NotionClient], fake: FakeNotion
) -> None:
    paragraphs = ["凤凰城的夏天很热。" * 180 for _ in range(100)]  # ~4.9 KB of UTF-8 each, ~490 KB in all
    page = publish(notion_for(), BlogDraft(title="宽字符", body="\n\n".join(paragraphs)))
    writes = fake.requests("POST", "/v1/pages") + fake.requests("PATCH", "/v1/blocks/")
    assert len(writes) == 2 and all(len(r.body) < REQUEST_CAP for r in writes)
    assert fake.text_of(page.page_id) == paragraphs


def first_create_lands_but_answers(fake: FakeNotion, reply: Reply, *, hold: bool = False) -> None:
    """The first page create reaches Notion, but its caller gets `reply` (late, past its timeout, if `hold`)."""
    tripped = threading.Event()

    def fault(request: Recorded) -> Reply | None:
        if request.method != "POST" or request.path != "/v1/pages" or tripped.is_set():
            return None
        tripped.set()
        with fake.lock:
            fake.route(request)
        if hold:
            fake.server.release.wait(10)
        return reply

    fake.faults.append(fault)


@pytest.mark.parametrize("lost", ["502", "timeout"])
def test_a_retry_after_an_ambiguous_create_finds_the_page_instead_of_creating_another(
    notion_for: Callable[..., NotionClient], fake: FakeNotion, sleeps: list[float], lost: str
) -> None:
    """Notion created the page, but its answer was lost: no retry in-process (a query could miss
    the new page); the later retry finds the page by its key and only appends the blocks missing."""
    first_create_lands_but_answers(
        fake, notion_error(502, "internal_server_error", "Bad gateway"), hold=lost == "timeout"
    )
    paragraphs = [f"Section {n}" for n in range(150)]
    client, draft = notion_for(notion_timeout_seconds=0.5), BlogDraft(title="Once", body="\n\n".join(paragraphs))
    with pytest.raises(TransientError, match="may have been created") as failed:
        publish(client, draft)
    assert failed.value.retry_after == 60.0 and failed.value.details["may_have_applied"] and sleeps == []
    page = publish(client, draft)  # the executor's attempt, a minute later
    assert len(fake.pages) == 1 and not page.created
    assert fake.text_of(page.page_id) == paragraphs  # the first 100 from the create, the rest appended
    assert len(fake.requests("POST", "/v1/pages")) == 1


def test_429_waits_for_retry_after_and_500_then_success(
    notion_for: Callable[..., NotionClient], fake: FakeNotion, sleeps: list[float]
) -> None:
    answers = iter(
        [
            notion_error(
                429,
                "rate_limited",
                "You have been rate limited. Please try again in a few minutes.",
                {"Retry-After": "2"},
            ),
            notion_error(500, "internal_server_error", "Unexpected error."),
        ]
    )

    def first_two_reads_fail(request: Recorded) -> Reply | None:
        return next(answers, None) if request.method == "GET" else None

    fake.faults.append(first_two_reads_fail)
    publish(notion_for(notion_max_attempts=3))
    assert sleeps[0] == 2.0 and len(sleeps) == 2
    assert len(fake.pages) == 1


def test_a_timeout_is_retried(notion_for: Callable[..., NotionClient], fake: FakeNotion, sleeps: list[float]) -> None:
    held = threading.Event()

    def hold_the_first_read(request: Recorded) -> Reply | None:
        if held.is_set():
            return None
        held.set()
        fake.server.release.wait(10)
        return None

    fake.faults.append(hold_the_first_read)
    target = notion_for(notion_timeout_seconds=0.3).blog_target(BLOG_DB, DRAFT)
    assert target.data_source_id == BLOG_DS and len(sleeps) == 1


def test_the_breaker_opens_after_repeated_failures_and_closes_after_its_reset_time(
    notion_for: Callable[..., NotionClient], fake: FakeNotion
) -> None:
    now = [0.0]
    breaker = CircuitBreaker("notion", failure_threshold=3, reset_after=60, clock=lambda: now[0])
    client = notion_for(breaker=breaker)
    failing = [True]
    fake.faults.append(
        lambda _: notion_error(503, "service_unavailable", "Notion is unavailable.") if failing[0] else None
    )
    with pytest.raises(TransientError):
        client.blog_target(BLOG_DB, DRAFT)
    seen = len(fake.server.requests)
    with pytest.raises(CircuitOpen):
        client.blog_target(BLOG_DB, DRAFT)
    assert len(fake.server.requests) == seen == 3
    now[0] += 61
    failing[0] = False
    assert client.blog_target(BLOG_DB, DRAFT).data_source_id == BLOG_DS
    assert breaker.state == "closed"


# --- the executor's notion.blog_draft ---------------------------------------------------------------
def draft_action(**payload: Any) -> ActionRequest:
    return ActionRequest(
        agent="marketing",
        kind="notion.blog_draft",
        summary="Blog draft: monsoon deliveries",
        payload={"title": DRAFT.title, "body": DRAFT.body, "tags": ["logistics"], **payload},
    )


def status_of(sql: psycopg.Connection, action_id: uuid.UUID) -> str:
    return sql.execute("select status from actions where id = %s", (action_id,)).fetchone()[0]


def test_the_handler_runs_through_the_executor_once(
    db: Database, notion_settings: Settings, fake: FakeNotion, sql: psycopg.Connection, sleeps: list[float]
) -> None:
    submitted = ApprovalQueue(db, notion_settings).submit(draft_action(), actor="t")
    assert submitted.risk_tier.value == "LOW"  # a draft is not public
    executor = Executor(db, notion_settings, clients=Clients(notion_settings, sleep=sleeps.append))
    try:
        assert executor.run_until_idle() == 1
        assert executor.run_until_idle() == 0
    finally:
        executor.close()
    row = sql.execute("select status, result, dispatched_at from actions where id = %s", (submitted.id,)).fetchone()
    [page] = fake.pages.values()
    assert row[0] == "succeeded" and row[2] is not None
    assert row[1] == {"page_id": page["id"], "url": page["url"], "created": True, "blocks": 4}
    assert page["properties"]["opsdesk_id"]["rich_text"][0]["text"]["content"] == idempotency_key(submitted.id)


def test_an_executor_retry_after_an_ambiguous_create_makes_no_second_page(
    db: Database, database_url: str, fake: FakeNotion, sql: psycopg.Connection, sleeps: list[float]
) -> None:
    settings = make_settings(
        database_url=database_url,
        notion_api_key=TOKEN,
        notion_base_url=fake.server.url,
        notion_blog_database_id=BLOG_DB,
        notion_max_attempts=1,
    )
    first_create_lands_but_answers(fake, notion_error(504, "gateway_timeout", "Timed out."))
    submitted = ApprovalQueue(db, settings).submit(draft_action(), actor="t")
    executor = Executor(db, settings, clients=Clients(settings, sleep=sleeps.append), rng=lambda: 1.0)
    try:
        executor.run_until_idle()
        assert status_of(sql, submitted.id) == "approved"  # a retry is scheduled in the database
        advance_clock(sql, 3600)
        executor.run_until_idle()
    finally:
        executor.close()
    assert status_of(sql, submitted.id) == "succeeded"
    assert len(fake.pages) == 1 and len(fake.requests("POST", "/v1/pages")) == 1
    assert sql.execute("select result->>'created' from actions where id = %s", (submitted.id,)).fetchone() == ("false",)


def test_an_ambiguous_create_is_looked_for_only_once_the_data_source_shows_it(
    db: Database, notion_settings: Settings, fake: FakeNotion, sql: psycopg.Connection, sleeps: list[float]
) -> None:
    fake.lagging = True  # a query right after the create would not see the page yet
    first_create_lands_but_answers(fake, notion_error(500, "internal_server_error", "Unexpected error."))
    submitted = ApprovalQueue(db, notion_settings).submit(draft_action(), actor="t")
    executor = Executor(db, notion_settings, clients=Clients(notion_settings, sleep=sleeps.append), rng=lambda: 1.0)
    try:
        executor.run_until_idle()
        wait = sql.execute(
            "select extract(epoch from run_after - db_now()) from actions where id = %s", (submitted.id,)
        ).fetchone()[0]
        assert status_of(sql, submitted.id) == "approved" and 59 < float(wait) <= 60 and sleeps == []
        assert len(fake.requests("POST", "/v1/pages")) == 1  # not created again in-process
        fake.unindexed.clear()  # a minute on, the data source shows the page
        advance_clock(sql, 61)
        executor.run_until_idle()
    finally:
        executor.close()
    assert status_of(sql, submitted.id) == "succeeded"
    assert len(fake.pages) == 1 and len(fake.requests("POST", "/v1/pages")) == 1


def test_an_unconfigured_blog_database_fails_the_action_before_dispatch(
    db: Database, settings: Settings, sql: psycopg.Connection
) -> None:
    submitted = ApprovalQueue(db, settings).submit(draft_action(), actor="t")
    executor = Executor(db, settings)
    try:
        executor.run_until_idle()
    finally:
        executor.close()
    row = sql.execute("select status, dispatched_at, last_error from actions where id = %s", (submitted.id,)).fetchone()
    assert row[0] == "failed" and row[1] is None and "NOTION_BLOG_DATABASE_ID" in row[2]


def test_bad_draft_payloads_are_refused_at_submission(db: Database, settings: Settings) -> None:
    from app.core.errors import InvalidInput

    queue = ApprovalQueue(db, settings)
    for payload in ({"title": ""}, {"tags": ["a,b"]}, {"tags": ["x" * 101]}, {"extra": 1}):
        with pytest.raises(InvalidInput):
            queue.submit(draft_action(**payload), actor="t")


# --- the knowledge base ---------------------------------------------------------------------------
def rich(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": text}, "plain_text": text}]


def test_knowledge_base_pages_are_read_as_plain_text(notion_for: Callable[..., NotionClient], fake: FakeNotion) -> None:
    fake.page_cap = 2  # the fake pages every read two at a time, so pagination is exercised
    shipping = fake.add_page(
        KB_DS,
        {
            "Title": {"id": "title", "type": "title", "title": rich("Shipping times")},
            "Category": {"id": "c", "type": "select", "select": {"name": "Delivery"}},
            "Tags": {"id": "t", "type": "multi_select", "multi_select": [{"name": "shipping"}, {"name": "faq"}]},
            "Reviewed": {"id": "r", "type": "checkbox", "checkbox": True},
            "Owner": {"id": "o", "type": "people", "people": []},
        },
        [
            {"type": "heading_2", "heading_2": {"rich_text": rich("How long")}},
            {"type": "paragraph", "paragraph": {"rich_text": rich("Orders ship in 2 business days.")}},
            {
                "type": "bulleted_list_item",
                "bulleted_list_item": {"rich_text": rich("Phoenix metro: next day")},
                "children": [{"type": "paragraph", "paragraph": {"rich_text": rich("Order before noon.")}}],
            },
            {"type": "child_page", "child_page": {"title": "Internal notes"}},
            {"type": "divider", "divider": {}},
        ],
        edited="2026-11-20T16:00:00.000Z",
    )
    fake.add_page(
        KB_DS,
        {"Title": {"id": "title", "type": "title", "title": rich("Refunds")}},
        [{"type": "paragraph", "paragraph": {"rich_text": rich("Refunds take 5 days.")}}],
        edited="2026-11-01T10:00:00.000Z",
    )
    fake.add_page(
        KB_DS,
        {"Title": {"id": "title", "type": "title", "title": rich("Hours")}},
        [],
        edited="2026-10-01T10:00:00.000Z",
    )

    pages = notion_for().read_kb()
    assert [p.title for p in pages] == ["Shipping times", "Refunds", "Hours"]
    first = pages[0]
    assert first.id == shipping and first.url == fake.pages[shipping]["url"]
    assert first.last_edited == datetime(2026, 11, 20, 16, tzinfo=UTC)
    assert first.text == (
        "Category: Delivery\nTags: shipping, faq\nReviewed: yes\n\n"
        "## How long\nOrders ship in 2 business days.\n- Phoenix metro: next day\n"
        "  Order before noon."
    )
    assert pages[2].text == ""

    recent = notion_for().read_kb(edited_since=datetime(2026, 11, 1, tzinfo=UTC))
    assert [p.title for p in recent] == ["Shipping times", "Refunds"]
    assert json.loads(fake.requests("POST", f"/v1/data_sources/{KB_DS}/query")[-1].body)["filter"] == {
        "timestamp": "last_edited_time",
        "last_edited_time": {"on_or_after": "2026-11-01T00:00:00+00:00"},
    }
