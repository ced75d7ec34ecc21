"""The daily report's chart: the last days' actions by outcome, emails against the quota, and the
website's visitors when Plausible gave them (PNG).

matplotlib's object API with its Agg renderer: no pyplot, so no global figure state and no GUI
backend, which keeps it safe in the scheduler's worker threads.
"""

from __future__ import annotations

import io

from app.reports.model import DailyReport

# outcome -> colour, stacked bottom to top
OUTCOMES = {
    "succeeded": "#2ecc71",
    "rejected": "#95a5a6",
    "expired": "#f1c40f",
    "failed": "#e74c3c",
    "unknown": "#8e44ad",
}
WIDTH_PX, HEIGHT_PX, DPI = 960, 600, 100
VISITORS_PX = 220  # the website visitors panel, when the report has Plausible's numbers


def render_chart(report: DailyReport) -> bytes:
    # imported here: matplotlib takes over a second to import, and only report building needs it
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    days = report.history
    labels = [f"{day.day:%b %d}" for day in days]
    positions = list(range(len(days)))
    website = report.website.numbers if report.website is not None else None
    height = HEIGHT_PX + (VISITORS_PX if website is not None else 0)
    figure = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI, layout="constrained")
    if website is not None:
        actions, emails, visitors = figure.subplots(3, 1, sharex=True, height_ratios=(3, 2, 2))
    else:
        actions, emails = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))

    stacked = [0] * len(days)
    for outcome, colour in OUTCOMES.items():
        values = [getattr(day, outcome) for day in days]
        actions.bar(positions, values, bottom=stacked, color=colour, label=outcome, width=0.7)
        stacked = [below + value for below, value in zip(stacked, values, strict=True)]
    actions.set_title(
        f"Actions by outcome, {len(days)} days to {report.day:%b %d} ({report.time_zone})", loc="left", fontsize=11
    )
    actions.yaxis.set_major_locator(MaxNLocator(integer=True))
    actions.legend(ncols=len(OUTCOMES), fontsize=8, loc="upper left", frameon=False)
    actions.set_ylim(0, max(max(stacked, default=0), 1) * 1.25)  # room for the legend above the bars

    limit = report.emails.daily_limit
    used = [day.emails_used for day in days]
    emails.bar(positions, used, color=["#e74c3c" if value >= limit else "#3498db" for value in used], width=0.7)
    emails.axhline(limit, color="#c0392b", linestyle="--", linewidth=1, label=f"quota {limit}/day")
    emails.set_title("Emails sent against the Brevo quota", loc="left", fontsize=11)
    emails.yaxis.set_major_locator(MaxNLocator(integer=True))
    emails.set_ylim(0, max(max(used, default=0), limit) * 1.15)
    emails.legend(fontsize=8, loc="upper left", frameon=False)
    panels = [actions, emails]
    if website is not None:
        by_day = {entry.day: entry.visitors for entry in website.history}
        counts = [by_day.get(day.day, 0) for day in days]
        visitors.bar(positions, counts, color="#16a085", width=0.7)
        visitors.set_title("Website visitors (Plausible)", loc="left", fontsize=11)
        visitors.yaxis.set_major_locator(MaxNLocator(integer=True))
        visitors.set_ylim(0, max(max(counts, default=0), 1) * 1.15)
        panels.append(visitors)
    panels[-1].set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)

    for axes in panels:
        axes.spines[["top", "right"]].set_visible(False)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()
