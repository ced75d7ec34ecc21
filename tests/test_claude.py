"""The Claude client: the real anthropic SDK against a local fake of the Messages and Models API,
and the spend records on real PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from pydantic import BaseModel, Field

from app.clients.claude_ledger import check_model_at_startup, claude_client, llm_spend
from app.core.database import Database
from app.core.errors import BudgetExceeded
from app.core.settings import Settings
from integrations.claude import ClaudeClient
from integrations.errors import CircuitOpen, ModelOutputInvalid, TransientError
from integrations.resilience import CircuitBreaker
from scheduler import main
from tests.conftest import advance_clock, make_settings
from tests.fake_http import FakeServer, Recorded, Reply

API_KEY = "sk-ant-api03-test-key-0123456789"
SYSTEM_PROMPT = "You triage support tickets for a small business in Phoenix. " * 40


class Triage(BaseModel):
    priority: Literal["low", "medium", "high"]
    summary: str = Field(max_length=200)


def model_info(model_id: str, created: str, lifecycle: str = "active") -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id.replace("-", " ").title(),
        "created_at": f"{created}T00:00:00Z",
        "lifecycle": lifecycle,
        "max_input_tokens": 1_000_000,
        "max_tokens": 128_000,
    }


CURRENT_MODELS = [
    model_info("claude-haiku-5-5", "2026-10-07"),
    model_info("claude-sonnet-5-5", "2026-09-28"),
    model_info("claude-opus-5-5", "2026-09-22"),
    model_info("claude-sonnet-5", "2026-06-30"),
]


def answer(
    text: str,
    *,
    input_tokens: int = 1200,
    output_tokens: int = 150,
    cache_write_5m: int = 0,
    cache_write_1h: int = 0,
    cache_read: int = 0,
    stop_reason: str = "end_turn",
    model: str = "claude-sonnet-5-5",
) -> dict[str, Any]:
    """A Messages API answer as the API sends it: a thinking block first, then the text."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [
            {"type": "thinking", "thinking": "The customer cannot log in.", "signature": "EqQBCgIYAh"},
            {"type": "text", "text": text},
        ],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_write_5m + cache_write_1h,
            "cache_read_input_tokens": cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache_write_5m,
                "ephemeral_1h_input_tokens": cache_write_1h,
            },
            "service_tier": "standard",
        },
    }


def api_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status,
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"},
        headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy", **(headers or {})},
    )


GOOD = json.dumps({"priority": "high", "summary": "Customer locked out of the account"})


class FakeAnthropic:
    """/v1/models (paged two at a time, as a server may) and /v1/messages (scripted replies)."""

    def __init__(self) -> None:
        self.models: list[dict[str, Any]] = list(CURRENT_MODELS)
        self.models_reply: Reply | None = None  # set to fail the listing
        self.replies: list[Reply | Callable[[Recorded], Reply]] = []
        self.default: Reply = Reply(200, answer(GOOD))
        self.server = FakeServer(self.respond)

    def respond(self, request: Recorded) -> Reply:
        url = urlsplit(request.path)
        if request.method == "GET" and url.path == "/v1/models":
            if self.models_reply is not None:
                return self.models_reply
            after = parse_qs(url.query).get("after_id", [None])[0]
            ids = [m["id"] for m in self.models]
            start = ids.index(after) + 1 if after else 0
            page = self.models[start : start + 2]
            return Reply(
                200,
                {
                    "data": page,
                    "has_more": start + 2 < len(self.models),
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                },
            )
        if request.method == "POST" and url.path == "/v1/messages":
            reply = self.replies.pop(0) if self.replies else self.default
            return reply(request) if callable(reply) else reply
        return api_error(404, "not_found_error", f"no route {request.path}")

    def requests(self, path: str) -> list[Recorded]:
        return [r for r in self.server.requests if urlsplit(r.path).path == path]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests("/v1/messages")]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    with fake.server:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


ClientFactory = Callable[..., ClaudeClient]


@pytest.fixture
def claude_for(db: Database, database_url: str, fake: FakeAnthropic, sleeps: list[float]) -> Iterator[ClientFactory]:
    made: list[ClaudeClient] = []

    def make(breaker: CircuitBreaker | None = None, **overrides: Any) -> ClaudeClient:
        settings = make_settings(
            database_url=database_url, anthropic_api_key=API_KEY, anthropic_base_url=fake.server.url, **overrides
        )
        client = claude_client(settings, db, breaker=breaker, sleep=sleeps.append)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def ask(client: ClaudeClient, **kwargs: Any) -> Triage:
    return client.structured(
        "support", SYSTEM_PROMPT, [{"role": "user", "content": "I cannot log in!"}], Triage, **kwargs
    )


def calls(sql: psycopg.Connection) -> list[tuple[Any, ...]]:
    return sql.execute(
        "select agent, model, outcome, cost_usd, input_tokens, output_tokens, "
        "cache_creation_input_tokens, cache_read_input_tokens from llm_calls order by id"
    ).fetchall()


# --- the request --------------------------------------------------------------------------------
def test_the_request_carries_the_model_the_cached_system_prompt_and_the_schema(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection
) -> None:
    result = ask(claude_for(), max_tokens=1024)
    assert result == Triage(priority="high", summary="Customer locked out of the account")
    [request] = fake.requests("/v1/messages")
    body = request.json()
    assert body["model"] == "claude-sonnet-5-5" and body["max_tokens"] == 1024
    assert body["system"] == [
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral", "ttl": "5m"}}
    ]
    assert body["messages"] == [{"role": "user", "content": "I cannot log in!"}]
    schema = body["output_config"]["format"]
    assert schema["type"] == "json_schema"
    assert schema["schema"]["properties"]["priority"]["enum"] == ["low", "medium", "high"]
    assert schema["schema"]["additionalProperties"] is False
    # current models refuse these (FACTS.md 5.3): never sent
    assert not {"temperature", "tool_choice", "tools"} & set(body)
    # anthropic 2.12.0 sends the key as a Bearer token (not x-api-key), with its API version
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["anthropic-version"]
    assert request.headers["x-stainless-retry-count"] == "0"  # the SDK's own retries are off
    assert [row[:3] for row in calls(sql)] == [("support", "claude-sonnet-5-5", "ok")]


def test_the_request_carries_a_configured_non_default_model(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection
) -> None:
    ask(claude_for(anthropic_model="claude-opus-5-5"))
    assert fake.messages[0]["model"] == "claude-opus-5-5"
    assert [row[:3] for row in calls(sql)] == [("support", "claude-opus-5-5", "ok")]


def test_a_one_hour_prompt_cache_is_asked_for_when_configured(claude_for: ClientFactory, fake: FakeAnthropic) -> None:
    ask(claude_for(anthropic_prompt_cache_ttl="1h"))
    assert fake.messages[0]["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_a_conversation_ending_with_the_assistant_is_refused_before_any_call(
    claude_for: ClientFactory, fake: FakeAnthropic
) -> None:
    from integrations.errors import InvalidRequest

    client = claude_for()
    with pytest.raises(InvalidRequest, match="end with a user message"):
        client.structured(
            "support", SYSTEM_PROMPT, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{"}], Triage
        )
    assert fake.requests("/v1/messages") == []


# --- structured output ----------------------------------------------------------------------------
def test_an_answer_that_misses_the_schema_is_repaired_once(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection
) -> None:
    wrong = json.dumps({"priority": "urgent", "summary": "Locked out"})
    fake.replies = [Reply(200, answer(wrong))]
    assert ask(claude_for()).priority == "high"
    first, repair = fake.messages
    assert repair["messages"][:2] == [
        {"role": "user", "content": "I cannot log in!"},
        {"role": "assistant", "content": wrong},
    ]
    assert repair["messages"][2]["role"] == "user"
    assert "priority" in repair["messages"][2]["content"] and "schema" in repair["messages"][2]["content"]
    assert repair["system"] == first["system"] and repair["output_config"] == first["output_config"]
    assert [row[2] for row in calls(sql)] == ["invalid_output", "ok"]


def test_a_second_miss_raises_a_typed_error(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection
) -> None:
    fake.default = Reply(200, answer("Sorry, here is my answer: high priority"))
    with pytest.raises(ModelOutputInvalid, match="even after a repair") as raised:
        ask(claude_for())
    assert raised.value.details["errors"] and not raised.value.retryable
    assert len(fake.requests("/v1/messages")) == 2
    assert [row[2] for row in calls(sql)] == ["invalid_output", "invalid_output"]


def test_a_refusal_is_not_repaired(claude_for: ClientFactory, fake: FakeAnthropic) -> None:
    fake.default = Reply(200, answer("", stop_reason="refusal"))
    with pytest.raises(ModelOutputInvalid, match="refused"):
        ask(claude_for())
    assert len(fake.requests("/v1/messages")) == 1


# --- cost and the cap -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "prices_json", "usage", "expected"),
    [
        # sonnet 5.5: $2 in, $10 out, $2.50 5m write, $0.20 read per MTok
        # 12,345 x 2 + 6,789 x 10 + 100,000 x 2.50 + 250,000 x 0.20 = 392,580 micro-dollars
        (
            "claude-sonnet-5-5",
            None,
            {"input_tokens": 12_345, "output_tokens": 6_789, "cache_write_5m": 100_000, "cache_read": 250_000},
            "0.39258",
        ),
        # 1-hour cache writes at $4: 3,000 x 2 + 2,000 x 10 + 50,000 x 4 = 226,000
        ("claude-sonnet-5-5", None, {"input_tokens": 3_000, "output_tokens": 2_000, "cache_write_1h": 50_000}, "0.226"),
        # haiku 5.5: $0.10 in, $0.50 out, write 5m $0.125, read $0.01
        # 40,000 x 0.10 + 10,000 x 0.50 + 200,000 x 0.125 + 1,000,000 x 0.01 = 44,000
        (
            "claude-haiku-5-5",
            None,
            {"input_tokens": 40_000, "output_tokens": 10_000, "cache_write_5m": 200_000, "cache_read": 1_000_000},
            "0.044",
        ),
        # LLM_PRICES_JSON overrides the table: 1,000,000 x 3 + 100,000 x 15 = 4,500,000
        (
            "claude-sonnet-5-5",
            '{"claude-sonnet-5-5": {"input": 3, "output": 15}}',
            {"input_tokens": 1_000_000, "output_tokens": 100_000},
            "4.5",
        ),
    ],
)
def test_the_recorded_cost_matches_the_price_table_to_the_cent(
    claude_for: ClientFactory,
    fake: FakeAnthropic,
    sql: psycopg.Connection,
    db: Database,
    settings: Settings,
    model: str,
    prices_json: str | None,
    usage: dict[str, int],
    expected: str,
) -> None:
    fake.default = Reply(200, answer(GOOD, model=model, **usage))
    overrides: dict[str, Any] = {"anthropic_model": model, "llm_daily_budget_usd": Decimal(100)}
    if prices_json:
        overrides["llm_prices_json"] = prices_json
    client = claude_for(**overrides)
    ask(client)
    [(_, used_model, outcome, cost, input_tokens, output_tokens, writes, reads)] = calls(sql)
    assert (used_model, outcome) == (model, "ok")
    assert cost == Decimal(expected)
    assert cost.quantize(Decimal("0.01")) == Decimal(expected).quantize(Decimal("0.01"))
    assert (input_tokens, output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    assert writes == usage.get("cache_write_5m", 0) + usage.get("cache_write_1h", 0)
    assert reads == usage.get("cache_read", 0)
    spend = llm_spend(db, settings)
    assert (
        spend.spent_usd == Decimal(expected) and spend.calls == 1 and spend.by_agent == {"support": Decimal(expected)}
    )


def spend_already(db: Database, settings: Settings, amount: str) -> None:
    """Record an earlier call of today that cost `amount`."""
    granted = db.call(
        "llm_reserve",
        agent="marketing",
        model="claude-sonnet-5-5",
        reserve_usd=Decimal(amount),
        budget_usd=Decimal(1000),
        time_zone=settings.cron_timezone,
    )
    db.call(
        "llm_settle",
        call_id=granted["call_id"],
        outcome="ok",
        input_tokens=1,
        output_tokens=1,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=0,
        cost_usd=Decimal(amount),
        latency_ms=10,
        error=None,
    )


def test_the_spend_cap_refuses_the_call_that_would_pass_it(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection, db: Database, settings: Settings
) -> None:
    client = claude_for(llm_daily_budget_usd=Decimal("0.05"))
    spend_already(db, settings, "0.045")
    # worst case of max_tokens=1000 on Sonnet 5.5 is at least 1,000 x $10/MTok = $0.01: past $0.05
    with pytest.raises(BudgetExceeded, match=r"LLM budget of \$0.05") as refused:
        ask(client, max_tokens=1000)
    assert refused.value.status_code == 429 and 0 < refused.value.retry_after <= 24 * 3600
    assert fake.requests("/v1/messages") == []
    # a call whose worst case still fits is made
    ask(client, max_tokens=100)
    assert len(fake.requests("/v1/messages")) == 1
    assert [row[2] for row in calls(sql)] == ["ok", "refused", "ok"]
    # the cap is per calendar day in CRON_TIMEZONE: tomorrow the big call fits again
    advance_clock(sql, 24 * 3600)
    ask(client, max_tokens=1000)
    assert len(fake.requests("/v1/messages")) == 2


def test_two_concurrent_callers_cannot_both_pass_the_cap(db: Database, settings: Settings) -> None:
    """Twenty callers at once, each reserving $0.30 under a $1.00 cap: exactly three get through."""
    start = threading.Barrier(20)
    granted: list[bool] = []

    def reserve() -> None:
        start.wait()
        row = db.call(
            "llm_reserve",
            agent="sales",
            model="claude-sonnet-5-5",
            reserve_usd=Decimal("0.30"),
            budget_usd=Decimal("1.00"),
            time_zone=settings.cron_timezone,
        )
        granted.append(row["granted"])

    threads = [threading.Thread(target=reserve) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 3 and granted.count(False) == 17
    assert llm_spend(db, settings).spent_usd == Decimal("0.90")


def test_a_failed_call_releases_its_reservation(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection, db: Database, settings: Settings
) -> None:
    fake.default = api_error(400, "invalid_request_error", "max_tokens: too large")
    client = claude_for()
    with pytest.raises(Exception, match="invalid_request_error"):
        ask(client)
    assert [row[2:4] for row in calls(sql)] == [("error", Decimal(0))]
    assert llm_spend(db, settings).spent_usd == 0
    assert len(fake.requests("/v1/messages")) == 1  # a 400 is not retried


# --- faults ---------------------------------------------------------------------------------------
def test_429_waits_for_retry_after(claude_for: ClientFactory, fake: FakeAnthropic, sleeps: list[float]) -> None:
    fake.replies = [
        api_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            {"retry-after": "7"},
        )
    ]
    assert ask(claude_for()).priority == "high"
    assert sleeps == [7.0]
    assert [r.headers["x-stainless-retry-count"] for r in fake.requests("/v1/messages")] == ["0", "0"]


@pytest.mark.parametrize(("status", "kind"), [(500, "api_error"), (529, "overloaded_error")])
def test_5xx_then_success(
    claude_for: ClientFactory, fake: FakeAnthropic, sleeps: list[float], sql: psycopg.Connection, status: int, kind: str
) -> None:
    fake.replies = [api_error(status, kind, "Overloaded" if status == 529 else "Internal server error")]
    assert ask(claude_for()).priority == "high"
    assert len(fake.requests("/v1/messages")) == 2 and len(sleeps) == 1
    assert [row[2] for row in calls(sql)] == ["ok"]  # one request, retried inside its reservation


def test_a_timeout_is_retried(claude_for: ClientFactory, fake: FakeAnthropic, sleeps: list[float]) -> None:
    def held(_: Recorded) -> Reply:
        fake.server.release.wait(10)  # longer than the client waits
        return Reply(200, answer(GOOD))

    fake.replies = [held]
    assert ask(claude_for(anthropic_timeout_seconds=0.3)).priority == "high"
    assert len(fake.requests("/v1/messages")) == 2 and len(sleeps) == 1


def test_the_breaker_opens_after_repeated_failures_and_closes_after_its_reset_time(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection
) -> None:
    now = [1000.0]
    breaker = CircuitBreaker("anthropic", failure_threshold=3, reset_after=30, clock=lambda: now[0])
    client = claude_for(breaker=breaker)
    fake.default = api_error(529, "overloaded_error", "Overloaded")
    with pytest.raises(TransientError):
        ask(client)
    assert breaker.state == "open" and len(fake.requests("/v1/messages")) == 3
    with pytest.raises(CircuitOpen):
        ask(client)
    assert len(fake.requests("/v1/messages")) == 3  # not even tried
    now[0] += 31
    fake.default = Reply(200, answer(GOOD))
    assert ask(client).priority == "high"
    assert breaker.state == "closed"
    assert [row[2] for row in calls(sql)] == ["error", "error", "ok"]


# --- the model ------------------------------------------------------------------------------------
@pytest.mark.parametrize("listed", [None, "retired"])
def test_a_missing_or_retired_model_falls_back_to_the_newest_sonnet(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection, listed: str | None
) -> None:
    configured = "claude-sonnet-4-5-20250929"
    if listed:
        fake.models.append(model_info(configured, "2025-09-29", lifecycle=listed))
    client = claude_for(anthropic_model=configured)
    resolution = client.resolve_model()
    # the newest Sonnet, not the newest model (Haiku 5.5 is newer)
    assert (resolution.resolved, resolution.fallback) == ("claude-sonnet-5-5", True)
    ask(client)
    assert fake.messages[0]["model"] == "claude-sonnet-5-5"
    assert sql.execute("select resolved from llm_model_resolution where configured = %s", (configured,)).fetchone() == (
        "claude-sonnet-5-5",
    )
    # another process reads the stored choice instead of listing again
    listings = len(fake.requests("/v1/models"))
    assert claude_for(anthropic_model=configured).resolve_model().resolved == "claude-sonnet-5-5"
    assert len(fake.requests("/v1/models")) == listings


def test_a_listed_model_is_kept_and_rechecked_after_the_cache_time(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection
) -> None:
    client = claude_for(anthropic_model_cache_hours=24)
    assert client.resolve_model().model_dump(include={"resolved", "fallback"}) == {
        "resolved": "claude-sonnet-5-5",
        "fallback": False,
    }
    listings = len(fake.requests("/v1/models"))
    assert listings == 2  # two pages of two
    client.resolve_model()
    assert len(fake.requests("/v1/models")) == listings
    advance_clock(sql, 25 * 3600)
    client.resolve_model()
    assert len(fake.requests("/v1/models")) == 2 * listings


def test_a_listing_failure_keeps_the_configured_model(
    claude_for: ClientFactory, fake: FakeAnthropic, sql: psycopg.Connection, sleeps: list[float]
) -> None:
    fake.models_reply = api_error(500, "api_error", "Internal server error")
    client = claude_for(anthropic_model="claude-sonnet-5-5")
    resolution = client.resolve_model()
    assert (resolution.resolved, resolution.fallback, resolution.checked_at) == ("claude-sonnet-5-5", False, None)
    assert "models list unavailable" in resolution.reason
    assert sql.execute("select count(*) from llm_model_resolution").fetchone() == (0,)
    assert sleeps == []  # one try: the configured id is a safe answer
    for _ in range(6):
        ask(client)
    assert {m["model"] for m in fake.messages} == {"claude-sonnet-5-5"}
    # the list's own breaker opened after five failures: the calls went on, the list was left alone
    assert len(fake.requests("/v1/models")) == 5


def test_start_up_checks_the_model_only_with_a_key(
    db: Database, database_url: str, fake: FakeAnthropic, sql: psycopg.Connection
) -> None:
    assert check_model_at_startup(make_settings(database_url=database_url), db) is None
    assert fake.server.requests == []
    settings = make_settings(
        database_url=database_url,
        anthropic_api_key=API_KEY,
        anthropic_base_url=fake.server.url,
        anthropic_model="claude-opus-4-1",
    )
    resolution = check_model_at_startup(settings, db)
    assert resolution is not None and resolution.resolved == "claude-sonnet-5-5"
    assert sql.execute("select configured, resolved, fallback from llm_model_resolution").fetchall() == [
        ("claude-opus-4-1", "claude-sonnet-5-5", True)
    ]


def test_models_check_prints_configured_and_resolved(
    fake: FakeAnthropic,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OPS_API_TOKEN", "test-api-token-0123456789")
    monkeypatch.setenv("APPROVAL_LINK_SECRET", "test-link-secret-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.server.url)
    monkeypatch.setenv("ANTHROPIC_MODEL", "claude-sonnet-4-5-20250929")
    with pytest.raises(SystemExit) as exited:
        main(["models", "check"])
    out = capsys.readouterr().out
    assert exited.value.code == 0, out
    assert "configured: claude-sonnet-4-5-20250929" in out and "resolved:   claude-sonnet-5-5" in out
    assert "LLM spend" in out and API_KEY not in out


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "is not JSON"),
        ('{"claude-x": {"input": "abc", "output": 1}}', "valid decimal"),
        ('{"claude-x": {"input": -1, "output": 1}}', "greater than or equal"),
    ],
)
def test_config_check_reports_a_malformed_price_table(value: str, message: str) -> None:
    from app.core.config_check import check

    anthropic_part = next(
        part for part in check(_env_file=None, llm_prices_json=value).parts if part.name == "anthropic"
    )
    assert anthropic_part.state == "malformed"
    assert [(row.setting, row.state) for row in anthropic_part.rows if message in row.note] == [
        ("LLM_PRICES_JSON", "malformed")
    ]
