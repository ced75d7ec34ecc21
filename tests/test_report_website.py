"""The daily report's Website section against the fake Plausible (tests/fake_plausible.py): the
report's day in CRON_TIMEZONE whatever the site's zone, stored with the report, shown in Discord,
on the page and in the chart; without Plausible it says once that it is not connected, and when
Plausible refuses or fails the report still goes out, saying what is missing and why."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.core.database import Database
from app.core.settings import Settings
from app.reports.build import HISTORY_DAYS, DailyReports
from app.reports.delivery import ALERT_COLOUR
from app.reports.page import render_page
from app.reports.website import WebsiteNumbers
from app.schedule.jobs import ReportJob
from app.schedule.runs import Firing
from integrations.discord_text import literal
from integrations.resilience import CircuitBreaker
from tests.fake_discord import FakeDiscord, limit_violations
from tests.fake_http import Reply
from tests.fake_plausible import API_KEY, FakePlausible
from tests.report_seed import DAY, NEXT, seed_settings
from tests.schedule_support import phoenix, set_db_clock
from tests.test_daily_report import png_size, quiet_sender, texts_of

HOSTILE_PATH = "/sale_*now*_@everyone"


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def plausible() -> Iterator[FakePlausible]:
    with FakePlausible(timezone="Europe/Berlin") as fake:  # the site reports in Berlin, opsdesk in Phoenix
        yield fake


def settings_for(database_url: str, tmp_path: Path, discord: FakeDiscord, **more: Any) -> Settings:
    return seed_settings(
        database_url,
        opsdesk_data_dir=tmp_path,
        discord_webhook_url=discord.webhook_url,
        public_base_url="https://ops.example.com",
        **more,
    )


@pytest.fixture
def connected(database_url: str, tmp_path: Path, discord: FakeDiscord, plausible: FakePlausible) -> Settings:
    return settings_for(
        database_url,
        tmp_path,
        discord,
        plausible_api_key=API_KEY,
        plausible_site_id=plausible.site_id,
        plausible_base_url=plausible.url,
        plausible_timeout_seconds=0.3,
    )


@pytest.fixture
def after_the_day(sql: psycopg.Connection) -> None:
    set_db_clock(sql, phoenix(NEXT, 8))


def reports_with(db: Database, settings: Settings, sleeps: list[float] | None = None) -> DailyReports:
    waits = sleeps if sleeps is not None else []
    return DailyReports(db, settings, website=WebsiteNumbers(settings, history_days=HISTORY_DAYS, sleep=waits.append))


def visits(fake: FakePlausible) -> None:
    """Phoenix times; the site's own (Berlin) day boundaries fall at 16:00 in Phoenix."""
    fake.visit(phoenix(DAY, 0, 0), "u1", "/", "/pricing", source="Google", duration=100)
    fake.visit(phoenix(DAY, 17, 30), "u2", HOSTILE_PATH, source="Newsletter")  # Jan 21 in Berlin
    fake.visit(phoenix(DAY, 23, 59), "u3", "/pricing", duration=20)
    fake.visit(phoenix(DAY - timedelta(days=1), 23, 59), "u9", "/")  # the day before, a minute short
    fake.visit(phoenix(DAY - timedelta(days=7), 12), "w1", "/", source="Google", duration=60)
    fake.visit(phoenix(DAY - timedelta(days=7), 13), "w2", "/about", "/pricing", duration=180)
    fake.visit(phoenix(NEXT, 0, 0), "late", "/")  # the next day: not in the report


def website_embed(body: dict[str, Any]) -> dict[str, Any]:
    [embed] = [embed for embed in body["embeds"] if embed.get("title", "").startswith("Website")]
    return embed


def test_the_report_shows_the_days_website_numbers_everywhere(
    db: Database,
    sql: psycopg.Connection,
    after_the_day: None,
    connected: Settings,
    plausible: FakePlausible,
    discord: FakeDiscord,
) -> None:
    visits(plausible)
    reports = reports_with(db, connected)

    result = ReportJob(reports, quiet_sender(reports))(Firing("daily_report", phoenix(NEXT, 9), attempt=1))

    assert result.note["posted_now"] is True
    stored = reports.load(DAY, with_chart=True)
    assert stored is not None and stored.chart is not None
    website = stored.report.website
    assert website is not None and website.state == "ok" and website.numbers is not None
    site = website.numbers
    assert (site.totals.visitors, site.totals.visits, site.totals.pageviews) == (3, 3, 4)
    assert (site.totals.bounce_rate, site.totals.visit_duration) == (67, 40)
    assert (site.day_before.visitors, site.week_before.visitors, site.week_before.bounce_rate) == (1, 2, 50)
    assert [page.name for page in site.top_pages] == ["/pricing", "/", HOSTILE_PATH]
    assert (site.top_sources[0].name, site.top_sources[0].visitors) == ("Direct / None", 1)
    assert [day.visitors for day in site.history][-8:] == [2, 0, 0, 0, 0, 0, 1, 3]
    assert png_size(stored.chart) == (960, 820)  # the visitors panel below the other two

    [post] = discord.posts()
    assert limit_violations(post.body) == [] and post.body["allowed_mentions"] == {"parse": []}
    embed = website_embed(post.body)
    assert embed["title"] == "Website \u00b7 Wed 20 Jan"
    lines = embed["description"].splitlines()
    assert lines[0] == "**Visitors** 3 \u00b7 day before 1 (+200%) \u00b7 last Wednesday 2 (+50%)"
    assert lines[3] == "**Bounce rate** 67% \u00b7 day before 100% (-33 pts) \u00b7 last Wednesday 50% (+17 pts)"
    assert lines[4] == "**Visit duration** 40s \u00b7 day before 0s (new) \u00b7 last Wednesday 2m 00s (-67%)"
    pages = {field["name"]: field["value"] for field in embed["fields"]}["Top pages (visitors)"]
    assert f"{literal(HOSTILE_PATH)} \u00b7 1" in pages.splitlines() and "@everyone" not in pages
    assert not any("http" in text for text in texts_of(post.body))

    [memory] = sql.execute("select content from memory where kind = 'report'").fetchone()
    assert "Website: 3 visitors (1 the day before, 2 a week before), 3 visits, 4 pageviews, bounce rate 67%" in memory
    assert HOSTILE_PATH not in memory  # visitors' words never become the business's own record

    # what was stored is what the page shows, whatever Plausible says later
    plausible.api_keys.clear()
    page = render_page(stored.report, stored, stored.chart)
    assert "Same day last week" in page and "+200%" in page and HOSTILE_PATH in page
    assert page.count("Direct / None") == 1 and "not connected" not in page


def test_without_plausible_the_section_says_once_it_is_not_connected(
    db: Database, after_the_day: None, database_url: str, tmp_path: Path, discord: FakeDiscord
) -> None:
    settings = settings_for(database_url, tmp_path, discord)
    reports = DailyReports(db, settings)

    ReportJob(reports, quiet_sender(reports))(Firing("daily_report", phoenix(NEXT, 9), attempt=1))

    stored = reports.load(DAY, with_chart=True)
    assert stored is not None and stored.chart is not None
    website = stored.report.website
    assert website is not None and (website.state, website.numbers) == ("not_connected", None)
    assert website.reason == (
        "Plausible is not connected (PLAUSIBLE_API_KEY and PLAUSIBLE_SITE_ID must both be configured)"
    )
    [post] = discord.posts()
    said = [text for text in texts_of(post.body) if "not connected" in text]
    assert len(said) == 1 and website_embed(post.body)["color"] != ALERT_COLOUR
    page = render_page(stored.report, stored, stored.chart)
    assert page.count("not connected") == 1 and "missing" not in page
    assert png_size(stored.chart) == (960, 600)  # no empty visitors panel


def _refuse_key(fake: FakePlausible) -> None:
    fake.api_keys.clear()


def _no_stats_api(fake: FakePlausible) -> None:
    fake.has_stats_api = False


def _rate_limited(fake: FakePlausible) -> None:
    fake.hourly_limit = 0


def _hold(fake: FakePlausible) -> None:
    fake.script += ["hold"] * 3


def _server_errors(fake: FakePlausible) -> None:
    fake.script += [Reply(502, b"<html>Bad gateway</html>")] * 3


@pytest.mark.parametrize(
    ("breaks", "why", "asked"),
    [
        (_refuse_key, "Plausible refused the API key or the site \u2014 HTTP 401: Invalid API key or site ID.", 1),
        (_no_stats_api, "Plausible's plan for this site does not include the Stats API \u2014 HTTP 402:", 1),
        (_rate_limited, "Plausible's hourly API allowance is used up \u2014 HTTP 429: Too many API requests.", 1),
        (_hold, "Plausible did not answer \u2014 timed out after 0.3 s", 3),
        (_server_errors, "Plausible did not answer \u2014 HTTP 502: <html>Bad gateway</html>", 3),
    ],
)
def test_when_plausible_fails_the_report_goes_out_saying_why(
    db: Database,
    after_the_day: None,
    connected: Settings,
    plausible: FakePlausible,
    discord: FakeDiscord,
    breaks: Callable[[FakePlausible], None],
    why: str,
    asked: int,
) -> None:
    visits(plausible)
    breaks(plausible)
    sleeps: list[float] = []
    reports = reports_with(db, connected, sleeps)

    result = ReportJob(reports, quiet_sender(reports))(Firing("daily_report", phoenix(NEXT, 9), attempt=1))

    assert result.note["posted_now"] is True  # on time, with everything else in it
    stored = reports.load(DAY)
    assert stored is not None and stored.status == "sent"
    website = stored.report.website
    assert website is not None and website.state == "missing" and website.numbers is None
    assert website.reason is not None and website.reason.startswith(why), website.reason
    assert len(plausible.server.requests) == asked  # the first failure ends the day's queries
    assert len(sleeps) == asked - 1  # retried only what a retry can help, without waiting on the clock
    [post] = discord.posts()
    embed = website_embed(post.body)
    assert embed["color"] == ALERT_COLOUR
    assert embed["description"].startswith("The website's numbers are missing from this report: ")
    assert [e["title"] for e in post.body["embeds"][:2]] == ["Actions", "Agent runs"]
    page = render_page(stored.report, stored, b"")
    assert "The website's numbers are missing from this report:" in page


def test_the_429_reason_says_when_the_allowance_comes_back(
    db: Database, after_the_day: None, connected: Settings, plausible: FakePlausible
) -> None:
    plausible.hourly_limit = 0
    numbers = WebsiteNumbers(connected, history_days=HISTORY_DAYS, sleep=lambda _: None)
    section = numbers(DAY)
    assert section.reason is not None and "resets at" in section.reason and section.reason.endswith("UTC)")


def test_an_open_breaker_leaves_plausible_alone(
    db: Database, after_the_day: None, connected: Settings, plausible: FakePlausible
) -> None:
    now = datetime(2027, 1, 21).timestamp()
    breaker = CircuitBreaker("plausible", clock=lambda: now)
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    section = WebsiteNumbers(connected, history_days=HISTORY_DAYS, breaker=breaker)(DAY)
    assert section.state == "missing" and section.reason is not None
    assert section.reason.startswith("Plausible failed several times in a row and is left alone for a while")
    assert plausible.server.requests == []
