"""The daily report as an HTML page (GET /reports/daily with Accept: text/html): the stored report
with its chart inline, rendered from app/templates/daily_report.html."""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from app.reports.model import COUNT_LABELS, DailyReport, StoredReport
from app.reports.website import metric_rows

_pages = Environment(
    loader=PackageLoader("app", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The page runs no script and loads nothing but its own inline chart. It carries signed review
# links: not cached, and never sent on as a Referer.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def render_page(report: DailyReport, stored: StoredReport | None, chart: bytes) -> str:
    zone = ZoneInfo(report.time_zone)

    def when(moment: datetime | None) -> str:
        return "" if moment is None else f"{moment.astimezone(zone):%a %d %b %H:%M}"

    def money(value: Decimal) -> str:
        return f"${value:,.2f}"

    return _pages.get_template("daily_report.html").render(
        report=report,
        stored=stored,
        labels=COUNT_LABELS,
        totals=report.totals.model_dump(),
        chart=base64.b64encode(chart).decode(),
        when=when,
        money=money,
        website_rows=metric_rows(report.website.numbers) if report.website and report.website.numbers else [],
    )
