"""integrations.plausible against the fake Stats API v2 (tests/fake_plausible.py): the report's day
is the caller's day whatever the site's time zone, and every error Plausible documents becomes the
right error of integrations.errors, retried only when that can help."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from integrations.errors import CircuitOpen, PermanentError, RateLimited, TransientError
from integrations.plausible import (
    AuthRefused,
    PlanRefused,
    PlausibleClient,
    PlausibleConfig,
    Totals,
    day_range,
)
from integrations.resilience import CircuitBreaker
from tests.fake_buffer_oauth import ManualClock
from tests.fake_http import Reply
from tests.fake_plausible import API_KEY, FakePlausible

PHOENIX = ZoneInfo("America/Phoenix")  # no daylight saving: -07:00 all year
DAY = date(2026, 12, 1)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 12, 2, 16, 0, tzinfo=UTC))


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakePlausible]:
    with FakePlausible(timezone="Europe/Berlin", clock=clock) as server:
        yield server


class Sleeps(list[float]):
    """Records the client's waits and moves the shared clock on by each: no wall-time sleeping."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.clock.advance(seconds)


OPEN: list[PlausibleClient] = []


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def client(fake: FakePlausible, clock: ManualClock, **config: object) -> tuple[PlausibleClient, Sleeps]:
    sleeps = Sleeps(clock)
    made = PlausibleClient(
        PlausibleConfig(api_key=config.pop("api_key", API_KEY), site_id=fake.site_id, base_url=fake.url, **config),
        breaker=CircuitBreaker("plausible", clock=lambda: clock().timestamp()),
        sleep=sleeps,
        clock=clock,
    )
    OPEN.append(made)
    return made, sleeps


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_day_range_is_the_callers_day_with_each_ends_own_offset() -> None:
    assert day_range(DAY, DAY, PHOENIX) == ["2026-12-01T00:00:00-07:00", "2026-12-01T23:59:59-07:00"]
    # the day clocks go back: 25 hours, the offset changes within it
    assert day_range(date(2026, 11, 1), date(2026, 11, 1), ZoneInfo("America/New_York")) == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T23:59:59-05:00",
    ]
    # Chile springs forward at midnight: the day starts at 01:00, its first real instant
    assert day_range(date(2026, 9, 6), date(2026, 9, 6), ZoneInfo("America/Santiago")) == [
        "2026-09-06T01:00:00-03:00",
        "2026-09-06T23:59:59-03:00",
    ]
    assert day_range(date(2026, 11, 25), DAY, PHOENIX)[0] == "2026-11-25T00:00:00-07:00"


def test_website_day_counts_the_report_days_not_the_sites(fake: FakePlausible, clock: ManualClock) -> None:
    """The site reports in Berlin, the business lives in Phoenix: Dec 1 in Phoenix runs from 08:00 on
    Dec 1 to 07:59:59 on Dec 2 in Berlin, and only the visits in that span count."""
    fake.visit(at("2026-12-01T06:59:59+00:00"), "early", "/")  # Nov 30, 23:59:59 in Phoenix
    fake.visit(at("2026-12-01T07:00:00+00:00"), "u1", "/", "/pricing", source="Google", duration=90)
    fake.visit(at("2026-12-01T12:00:00+00:00"), "u2", "/blog/planters", source="Google")
    fake.visit(at("2026-12-01T23:30:00+00:00"), "u3", "/pricing", duration=30)  # Dec 2 in Berlin, Dec 1 here
    fake.visit(at("2026-12-02T06:59:59+00:00"), "u1", "/blog/planters", source="Twitter", duration=60)
    fake.visit(at("2026-12-02T07:00:00+00:00"), "late", "/")  # Dec 2 in Phoenix
    fake.visit(at("2026-11-24T15:00:00+00:00"), "w1", "/", "/about", duration=200)  # a week before
    fake.visit(at("2026-11-18T15:00:00+00:00"), "old", "/")  # 13 days before: still in the chart
    plausible, _ = client(fake, clock)

    website = plausible.website_day(DAY, PHOENIX)

    assert website.totals == Totals(visitors=3, visits=4, pageviews=5, bounce_rate=75, visit_duration=45)
    assert website.day_before == Totals(visitors=1, visits=1, pageviews=1, bounce_rate=100, visit_duration=0)
    assert website.week_before == Totals(visitors=1, visits=1, pageviews=2, bounce_rate=0, visit_duration=200)
    assert [(row.name, row.visitors, row.pageviews) for row in website.top_pages] == [
        ("/blog/planters", 2, 2),
        ("/pricing", 2, 2),
        ("/", 1, 1),
    ]
    assert [(row.name, row.visitors) for row in website.top_sources] == [
        ("Google", 2),
        ("Direct / None", 1),
        ("Twitter", 1),
    ]
    assert [day.day for day in website.history] == [DAY - timedelta(days=back) for back in range(13, -1, -1)]
    assert website.history[0].visitors == 1 and website.history[-1].visitors == 3
    assert sum(day.visitors for day in website.history) == 1 + 1 + 1 + 3
    # every range the client sent was a pair of Phoenix datetimes, never plain dates
    ranges = [query["date_range"] for query in fake.queries]
    assert len(ranges) == 14 + 2 and all(r[0].endswith("-07:00") and r[1].endswith("-07:00") for r in ranges)
    assert ranges[0] == ["2026-12-01T00:00:00-07:00", "2026-12-01T23:59:59-07:00"]


def test_top_lists_ask_for_a_few_rows_and_keep_outside_text_storable(fake: FakePlausible, clock: ManualClock) -> None:
    for n in range(8):
        fake.visit(at("2026-12-01T15:00:00+00:00"), f"u{n}", f"/p{n % 6}", source=f"site{n % 7}.example")
    fake.visit(at("2026-12-01T16:00:00+00:00"), "x", "/bad\x00path\ud800")
    plausible, _ = client(fake, clock)

    pages = plausible.top_pages(DAY - timedelta(days=6), DAY, PHOENIX, limit=3)

    assert len(pages) == 3 and [page.visitors for page in pages] == [2, 2, 1]
    assert fake.queries[-1]["pagination"] == {"limit": 3, "offset": 0}
    assert fake.queries[-1]["date_range"] == ["2026-11-25T00:00:00-07:00", "2026-12-01T23:59:59-07:00"]
    everything = plausible.top_pages(DAY, DAY, PHOENIX, limit=20)
    assert "/badpath\ufffd" in [page.name for page in everything]


@pytest.mark.parametrize(
    ("setup", "error", "text"),
    [
        (lambda fake: fake.api_keys.clear(), AuthRefused, "Invalid API key or site ID"),
        (lambda fake: setattr(fake, "site_id", "other.example"), AuthRefused, "PLAUSIBLE_SITE_ID"),
        (lambda fake: setattr(fake, "has_stats_api", False), PlanRefused, "does not have access to Stats API"),
        (lambda fake: setattr(fake, "locked", True), PlanRefused, "site is locked"),
        (lambda fake: fake.script.append(Reply(400, {"error": "#/metrics/0: Invalid metric"})), PermanentError, "400"),
        (lambda fake: fake.script.append(Reply(404, {"error": "Not found"})), PermanentError, "PLAUSIBLE_BASE_URL"),
        (
            lambda fake: fake.script.append(Reply(302, b"", {"Location": "https://elsewhere.example/"})),
            PermanentError,
            "PLAUSIBLE_BASE_URL",
        ),
        (lambda fake: fake.script.append(Reply(200, {"data": []})), PermanentError, "not a Stats API v2 result"),
    ],
)
def test_refusals_are_permanent_and_asked_once(
    fake: FakePlausible, clock: ManualClock, setup: object, error: type[Exception], text: str
) -> None:
    plausible, sleeps = client(fake, clock)
    setup(fake)  # type: ignore[operator]
    with pytest.raises(error) as raised:
        plausible.website_day(DAY, PHOENIX)
    assert type(raised.value) is error and not raised.value.retryable
    assert text in raised.value.message and API_KEY not in raised.value.message
    assert len(fake.server.requests) == 1 and sleeps == []  # the first failure ends the day's queries


def test_a_missing_key_header_is_an_auth_refusal(fake: FakePlausible, clock: ManualClock) -> None:
    plausible, _ = client(fake, clock)
    plausible._http.headers.pop("Authorization")
    with pytest.raises(AuthRefused, match="Missing API key"):
        plausible.totals(DAY, DAY, PHOENIX)


def test_429_waits_for_the_next_clock_hour(fake: FakePlausible, clock: ManualClock) -> None:
    """Plausible counts a key's requests per clock hour and sends no header: the reset is the top of
    the next hour. A long wait is left to the caller; a short one is waited here."""
    fake.hourly_limit = 1
    clock.now = datetime(2026, 12, 2, 16, 20, tzinfo=UTC)
    plausible, sleeps = client(fake, clock)
    plausible.totals(DAY, DAY, PHOENIX)
    with pytest.raises(RateLimited) as raised:
        plausible.totals(DAY, DAY, PHOENIX)
    assert raised.value.retry_after == pytest.approx(40 * 60 + 5)
    assert raised.value.details["resets_at"] == "2026-12-02T17:00:05+00:00"
    assert "resets at 17:00 UTC" in raised.value.message and sleeps == []
    clock.now = datetime(2026, 12, 2, 16, 59, 50, tzinfo=UTC)
    assert plausible.totals(DAY, DAY, PHOENIX).visitors == 0  # 429, a 15 s wait, then the new hour
    assert sleeps == [pytest.approx(15)]


def test_server_errors_are_retried_with_backoff_then_given_up(fake: FakePlausible, clock: ManualClock) -> None:
    plausible, sleeps = client(fake, clock)
    fake.script += [Reply(502, b"<html>Bad Gateway</html>"), Reply(503, {"error": "down"})]
    assert plausible.totals(DAY, DAY, PHOENIX) == Totals()
    assert len(sleeps) == 2 and all(0 < wait <= 8 + 0.5 for wait in sleeps)
    fake.script += [Reply(500, {})] * 3
    with pytest.raises(TransientError, match="HTTP 500"):
        plausible.totals(DAY, DAY, PHOENIX)


def test_a_timeout_is_transient_and_the_breaker_stops_asking(fake: FakePlausible, clock: ManualClock) -> None:
    plausible, _ = client(fake, clock, timeout_seconds=0.2, max_attempts=1)
    for _ in range(5):
        fake.script.append("hold")
        with pytest.raises(TransientError, match=r"timed out after 0\.2 s"):
            plausible.totals(DAY, DAY, PHOENIX)
    asked = len(fake.server.requests)
    with pytest.raises(CircuitOpen):
        plausible.website_day(DAY, PHOENIX)
    assert len(fake.server.requests) == asked  # open: nothing sent
    clock.advance(31)  # half-open: one trial, which succeeds and closes it
    assert plausible.totals(DAY, DAY, PHOENIX) == Totals()


def test_an_unreachable_host_is_transient() -> None:
    with FakePlausible() as gone:
        url = gone.url  # closed on exit: nothing listens there any more
    plausible = PlausibleClient(
        PlausibleConfig(api_key=API_KEY, site_id="example.com", base_url=url, max_attempts=2), sleep=lambda _: None
    )
    OPEN.append(plausible)
    with pytest.raises(TransientError, match="connection failed"):
        plausible.totals(DAY, DAY, PHOENIX)


def test_a_self_hosted_base_url_with_a_trailing_slash(fake: FakePlausible) -> None:
    hosted = PlausibleClient(
        PlausibleConfig(api_key=API_KEY, site_id=fake.site_id, base_url=f"{fake.url}/"), sleep=lambda _: None
    )
    OPEN.append(hosted)
    fake.visit(at("2026-12-01T15:00:00+00:00"), "u", "/")
    assert hosted.totals(DAY, DAY, PHOENIX).visitors == 1
    request = fake.server.requests[-1]
    assert request.path == "/api/v2/query" and request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.json()["site_id"] == "example.com"
