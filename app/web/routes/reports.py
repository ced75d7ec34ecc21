"""`GET /reports/daily?date=YYYY-MM-DD` (Bearer): the daily report as JSON, or as an HTML page with
its chart when the client asks for `text/html`; `GET /reports/daily/chart.png?date=` is the chart.

The stored report (the one posted to Discord) is served as it was stored; a day without one is
built on demand and not stored: a GET changes nothing. Without `date`: yesterday in CRON_TIMEZONE.
A day that is not over yet is 422.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from app.reports.build import DailyReports
from app.reports.chart import render_chart
from app.reports.model import DailyReport, StoredReport
from app.reports.page import PAGE_HEADERS, render_page
from app.web.deps import ApiAuth, ReportsDep
from app.web.request_guard import CheckedRoute

router = APIRouter(tags=["reports"], route_class=CheckedRoute)  # every input checked (app.web.request_guard)
ReportDay = Annotated[
    date | None, Query(alias="date", description="YYYY-MM-DD; yesterday in CRON_TIMEZONE if left out")
]


class ReportAnswer(BaseModel):
    report: DailyReport
    stored: bool  # False: built for this request from the database as it is now
    built_at: datetime | None
    sent_at: datetime | None  # when it was posted to Discord
    discord_message_id: str | None
    chart_url: str


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    html, json_ = accept.find("text/html"), accept.find("application/json")
    return html >= 0 and (json_ < 0 or html < json_)


def _report(reports: DailyReports, day: date | None, *, with_chart: bool) -> tuple[DailyReport, StoredReport | None]:
    day = day or reports.yesterday()
    stored = reports.load(day, with_chart=with_chart)
    return (stored.report if stored is not None else reports.build(day)), stored


@router.get(
    "/reports/daily",
    dependencies=[ApiAuth],
    response_model=ReportAnswer,
    summary="The daily report (JSON; an HTML page with Accept: text/html)",
    responses={200: {"content": {"text/html": {}}}},
)
def daily_report(request: Request, reports: ReportsDep, day: ReportDay = None) -> Response | ReportAnswer:
    html = wants_html(request)
    report, stored = _report(reports, day, with_chart=html)
    if html:
        chart = (stored.chart if stored is not None else None) or render_chart(report)
        return HTMLResponse(render_page(report, stored, chart), headers=PAGE_HEADERS)
    base = reports.settings.public_base_url.rstrip("/")
    return ReportAnswer(
        report=report,
        stored=stored is not None,
        built_at=stored.built_at if stored else None,
        sent_at=stored.sent_at if stored else None,
        discord_message_id=stored.discord_message_id if stored else None,
        chart_url=f"{base}/reports/daily/chart.png?date={report.day.isoformat()}",
    )


@router.get(
    "/reports/daily/chart.png",
    dependencies=[ApiAuth],
    response_class=Response,
    summary="The daily report's chart (PNG)",
    responses={200: {"content": {"image/png": {}}}},
)
def daily_report_chart(reports: ReportsDep, day: ReportDay = None) -> Response:
    report, stored = _report(reports, day, with_chart=True)
    chart = (stored.chart if stored is not None else None) or render_chart(report)
    return Response(chart, media_type="image/png", headers={"Cache-Control": "no-store"})
