"""A fake Plausible Stats API v2 on 127.0.0.1: `POST /api/v2/query` with a Bearer key, answering
`{"results": [{"metrics", "dimensions"}], "meta", "query"}` computed from an in-memory list of
visits, so a test can check which visits the time range it sent selects.

As Plausible does (lib/plausible/stats/query_parser.ex, sql/expression.ex): a date-only `date_range`
is read in the site's own time zone (00:00:00 to 23:59:59 there); a range of ISO datetimes with
offsets selects exactly those instants; `time:day` buckets and `meta.time_labels` are dates in the
site's time zone; an empty source is labelled "Direct / None". Errors are `{"error": message}`:
401 (missing or unknown key, unknown site), 402 (plan without the Stats API, locked site), 429 (the
hourly limit, counted per clock hour as lib/plausible/rate_limit.ex does, no headers), 400
(validation). Metrics modelled: visitors, visits, pageviews, events,
bounce_rate, visit_duration, views_per_visit, percentage; dimensions: event:page, visit:source,
time:day. Anything else Plausible accepts is answered 501 by the fake, never silently. The facts and
where they were checked: https://plausible.io/docs/stats-api and docs/vendors/plausible.md."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.fake_http import FakeServer, Recorded, Reply, quiet_disconnects

API_KEY = "plausible-test-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789ab"
SITE_ID = "example.com"
MISSING_KEY = "Missing API key. Please use a valid Plausible API key as a Bearer Token."
INVALID_KEY = (
    "Invalid API key or site ID. Please make sure you're using a valid API key with access to the site "
    "you've requested."
)
MISSING_SITE = "Missing site ID. Please provide the required site_id parameter with your request."
NO_STATS_API = (
    "The account that owns this API key does not have access to Stats API. Please make sure you're using "
    "the API key of a subscriber account and that the subscription plan includes Stats API"
)
LOCKED = (
    "This Plausible site is locked due to missing active subscription. In order to access it, the site owner "
    "should subscribe to a suitable plan"
)
METRICS = (
    "visitors",
    "visits",
    "pageviews",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
    "events",
    "scroll_depth",
    "percentage",
    "conversion_rate",
    "group_conversion_rate",
    "average_revenue",
    "total_revenue",
    "time_on_page",
)
MODELLED_METRICS = (
    "visitors",
    "visits",
    "pageviews",
    "events",
    "bounce_rate",
    "visit_duration",
    "views_per_visit",
    "percentage",
)
SESSION_METRICS = ("bounce_rate", "views_per_visit", "visit_duration")
VISIT_PROPS = (
    "source",
    "referrer",
    "channel",
    "utm_medium",
    "utm_source",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "device",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "country",
    "region",
    "city",
    "country_name",
    "region_name",
    "city_name",
    "entry_page",
    "exit_page",
    "entry_page_hostname",
    "exit_page_hostname",
)
TIME_DIMENSIONS = ("time", "time:hour", "time:day", "time:week", "time:month")
MODELLED_DIMENSIONS = ("event:page", "visit:source", "time:day")
QUERY_KEYS = ("site_id", "metrics", "date_range", "dimensions", "filters", "order_by", "include", "pagination")


@dataclass(frozen=True)
class Visit:
    """One session: who, when it began (every pageview of it counts at that instant), where it came
    from ("" is no referrer), the pages it viewed in order, and how long it lasted."""

    start: datetime
    user: str
    pages: tuple[str, ...] = ("/",)
    source: str = ""
    duration: int = 0


class QueryError(Exception):
    pass


class NotModelled(Exception):  # the fake answers it with 501
    pass


def _inspect(value: str) -> str:
    """How Elixir's `inspect` prints a metric (an atom) or a dimension (a string) in an error."""
    return f":{value}" if value in METRICS else f'"{value}"'


@dataclass
class FakePlausible:
    timezone: str = "Europe/Berlin"  # the site's reporting time zone
    clock: Callable[[], datetime] = field(default=lambda: datetime(2026, 12, 2, 16, 0, tzinfo=UTC))
    site_id: str = SITE_ID
    visits: list[Visit] = field(default_factory=list)
    api_keys: set[str] = field(default_factory=lambda: {API_KEY})
    hourly_limit: int = 600  # Plausible Cloud's default per key (CE: 1,000,000)
    has_stats_api: bool = True  # False: the plan lacks the Stats API (402)
    locked: bool = False  # True: the site is locked for want of a subscription (402)
    script: list[Reply | str] = field(default_factory=list)  # answered first, in order; "hold": never answered
    queries: list[dict[str, Any]] = field(default_factory=list)  # bodies that passed authorization

    def __post_init__(self) -> None:
        self.server = FakeServer(self._respond)
        quiet_disconnects(self.server)
        self._hits: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> FakePlausible:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def visit(self, start: datetime, user: str, *pages: str, source: str = "", duration: int = 0) -> Visit:
        record = Visit(start, user, pages or ("/",), source, duration)
        self.visits.append(record)
        return record

    # --- HTTP, in the order Plausible's AuthorizePublicAPI plug checks ------------------------------
    def _respond(self, request: Recorded) -> Reply:
        with self._lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted == "hold":
            self.server.release.wait(30)  # the client times out first; the fake's exit ends the wait
        if isinstance(scripted, Reply):
            return scripted
        if request.method != "POST" or request.path.split("?")[0] != "/api/v2/query":
            return Reply(404, {"error": "Not found"})
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return Reply(401, {"error": MISSING_KEY})
        key = authorization.removeprefix("Bearer ").strip()
        if key not in self.api_keys:
            return Reply(401, {"error": INVALID_KEY})
        if not self._take(key):
            return Reply(
                429,
                {
                    "error": f"Too many API requests. Your API key is limited to {self.hourly_limit} "
                    "requests per hour. Please contact us to request more capacity."
                },
            )
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "site_id" not in body:
            return Reply(400, {"error": MISSING_SITE})
        if body["site_id"] != self.site_id:
            return Reply(401, {"error": INVALID_KEY})
        if self.locked:
            return Reply(402, {"error": LOCKED})
        if not self.has_stats_api:
            return Reply(402, {"error": NO_STATS_API})
        with self._lock:
            self.queries.append(body)
        try:
            return Reply(200, self._query(body))
        except QueryError as exc:
            return Reply(400, {"error": str(exc)})
        except NotModelled as exc:
            return Reply(501, {"error": f"fake_plausible does not model this: {exc}"})

    def _take(self, key: str) -> bool:
        """Plausible.RateLimit.check_rate: one counter per key and clock hour (bucket =
        div(now_ms, 3_600_000)), incremented by every request, refused ones too; it starts from
        zero when the hour turns."""
        bucket = int(self.clock().timestamp()) // 3600
        with self._lock:
            count = self._hits.get((key, bucket), 0) + 1
            self._hits[(key, bucket)] = count
            return count <= self.hourly_limit

    # --- the query ---------------------------------------------------------------------------------
    def _query(self, body: dict[str, Any]) -> dict[str, Any]:
        extra = sorted(set(body) - set(QUERY_KEYS))
        if extra:
            raise QueryError(f"#/{extra[0]}: Schema does not allow additional properties.")
        metrics = body.get("metrics")
        if not isinstance(metrics, list) or not metrics or len(set(metrics)) != len(metrics):
            raise QueryError("#/metrics: Expected a non-empty list of unique metrics.")
        for index, metric in enumerate(metrics):
            if metric not in METRICS:
                raise QueryError(f'#/metrics/{index}: Invalid metric "{metric}"')
        dimensions = body.get("dimensions") or []
        for dimension in dimensions:
            if not _known_dimension(dimension):
                raise QueryError(f"Invalid dimensions '{dimensions}'")
        if body.get("filters"):
            raise NotModelled("filters")
        first, last = self._date_range(body.get("date_range"))
        order_by = self._order_by(body.get("order_by"), metrics, dimensions)
        include = body.get("include") or {}
        pagination = body.get("pagination") or {}
        _validate(metrics, dimensions, include, pagination)
        missing = [m for m in metrics if m not in MODELLED_METRICS] + [
            d for d in dimensions if d not in MODELLED_DIMENSIONS
        ]
        if missing:
            raise NotModelled(", ".join(missing))
        rows = [
            (v, page, i)
            for v in self.visits
            if first <= v.start.replace(microsecond=0) <= last
            for i, page in enumerate(v.pages)
        ]
        total_visitors = len({v.user for v, _, _ in rows})
        groups: dict[tuple[str, ...], list[tuple[Visit, str, int]]] = {}
        for row in rows:
            groups.setdefault(tuple(self._value(d, row) for d in dimensions), []).append(row)
        if not dimensions:
            groups = {(): rows}
        results = [
            {
                "metrics": [_metric(m, members, "event:page" in dimensions, total_visitors) for m in metrics],
                "dimensions": list(key),
            }
            for key, members in groups.items()
        ]
        results.sort(key=lambda r: r["dimensions"])  # ties keep a stable, predictable order
        for name, direction in reversed(order_by):
            if name in dimensions:
                at = dimensions.index(name)
                results.sort(key=lambda r, at=at: r["dimensions"][at], reverse=direction == "desc")
            else:
                at = metrics.index(name)
                results.sort(key=lambda r, at=at: r["metrics"][at], reverse=direction == "desc")
        offset, limit = pagination.get("offset", 0), pagination.get("limit", 10_000)
        meta: dict[str, Any] = {}
        if include.get("total_rows"):
            meta["total_rows"] = len(results)
        if include.get("time_labels"):
            meta["time_labels"] = [
                (first.date() + timedelta(days=n)).isoformat() for n in range((last.date() - first.date()).days + 1)
            ]
        if include.get("imports"):
            meta["imports_included"] = False
        echoed: dict[str, Any] = {
            "site_id": body["site_id"],
            "metrics": metrics,
            "date_range": [first.isoformat(), last.isoformat()],
            "filters": [],
            "dimensions": dimensions,
            "order_by": [list(o) for o in order_by],
            "include": include,
        }
        if "pagination" in body:
            echoed["pagination"] = {"offset": offset, "limit": limit}
        return {"results": results[offset : offset + limit], "meta": meta, "query": echoed}

    def _value(self, dimension: str, row: tuple[Visit, str, int]) -> str:
        visit, page, _ = row
        if dimension == "event:page":
            return page
        if dimension == "visit:source":
            return visit.source or "Direct / None"
        return visit.start.astimezone(self.zone).date().isoformat()

    def _date_range(self, raw: Any) -> tuple[datetime, datetime]:
        """Plausible's parse_time_range: dates are whole days in the site's zone, datetimes are exact."""
        today = self.clock().astimezone(self.zone).date()
        if isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw):
            try:
                return self._days(date.fromisoformat(raw[0]), date.fromisoformat(raw[1]))
            except ValueError:
                pass
            try:
                first, last = (datetime.fromisoformat(x.replace("Z", "+00:00")) for x in raw)
            except ValueError:
                first = last = None
            if first is None or last is None or first.tzinfo is None or last.tzinfo is None:
                raise QueryError(f"Invalid date_range '{raw}'.")
            return first.astimezone(self.zone), last.astimezone(self.zone)
        if raw == "day":
            return self._days(today, today)
        if raw == "month":
            return self._days(today.replace(day=1), _month_end(today))
        if raw == "year":
            return self._days(today.replace(month=1, day=1), today.replace(month=12, day=31))
        if raw == "all":
            earliest = min((v.start.astimezone(self.zone).date() for v in self.visits), default=today)
            return self._days(min(earliest, today), today)
        if isinstance(raw, str) and raw.endswith("d") and raw[:-1].isdigit() and 0 < int(raw[:-1]) <= 5000:
            return self._days(today - timedelta(days=int(raw[:-1])), today - timedelta(days=1))
        if raw in ("24h", "realtime", "30m") or (isinstance(raw, str) and raw.endswith("mo")):
            raise NotModelled(f"date_range {raw!r}")
        raise QueryError(f"Invalid date_range {raw!r}")

    def _days(self, first: date, last: date) -> tuple[datetime, datetime]:
        return (datetime.combine(first, time(0, 0, 0), self.zone), datetime.combine(last, time(23, 59, 59), self.zone))

    @staticmethod
    def _order_by(raw: Any, metrics: list[str], dimensions: list[str]) -> list[tuple[str, str]]:
        if raw is None:
            times = [(d, "asc") for d in dimensions if d in TIME_DIMENSIONS]
            return [*times, (metrics[0], "desc")]
        if not isinstance(raw, list):
            raise QueryError(f"Invalid order_by '{raw}'.")
        out = []
        for entry in raw:
            if not (isinstance(entry, list) and len(entry) == 2 and entry[1] in ("asc", "desc")):
                raise QueryError(f"Invalid order_by entry '{entry}'.")
            if entry[0] not in metrics and entry[0] not in dimensions:
                raise QueryError(
                    f"Invalid order_by entry '{{{_inspect(entry[0])}, :{entry[1]}}}'. "
                    "Entry is not a queried metric or dimension."
                )
            out.append((entry[0], entry[1]))
        return out


def _known_dimension(dimension: Any) -> bool:
    if not isinstance(dimension, str):
        return False
    if dimension.startswith("event:props:"):
        return len(dimension) > len("event:props:")
    return dimension in ("event:page", "event:goal", "event:hostname", *TIME_DIMENSIONS) or (
        dimension.startswith("visit:") and dimension.removeprefix("visit:") in VISIT_PROPS
    )


def _validate(metrics: list[str], dimensions: list[str], include: Any, pagination: Any) -> None:
    """Plausible's QueryValidations for the combinations its docs name."""
    event_dimensions = [d for d in dimensions if d.startswith("event:")]
    session = [m for m in metrics if m in SESSION_METRICS]
    if (
        session
        and event_dimensions
        and event_dimensions != ["event:page"]
        and set(event_dimensions) != {"event:page", "event:hostname"}
    ):
        raise QueryError(
            f"Session metric(s) {', '.join(f'`{m}`' for m in session)} cannot be queried along with "
            f"event dimension(s) {', '.join(f'`{d}`' for d in event_dimensions)}"
        )
    if "views_per_visit" in metrics and dimensions:
        raise QueryError("Metric `views_per_visit` cannot be queried with `dimensions`.")
    if "percentage" in metrics and not dimensions:
        raise QueryError("Metric `percentage` requires non-empty `dimensions`.")
    if not isinstance(include, dict) or set(include) - {"imports", "time_labels", "total_rows", "comparisons"}:
        raise QueryError(f"Invalid include '{include}'.")
    if include.get("time_labels") and not any(d in TIME_DIMENSIONS for d in dimensions):
        raise QueryError("Invalid include.time_labels: requires a time dimension.")
    if include.get("comparisons"):
        raise NotModelled("include.comparisons")
    limit, offset = (pagination or {}).get("limit", 10_000), (pagination or {}).get("offset", 0)
    if not (isinstance(limit, int) and 1 <= limit <= 10_000 and isinstance(offset, int) and offset >= 0):
        raise QueryError(f"Invalid pagination '{pagination}'.")


def _metric(name: str, rows: list[tuple[Visit, str, int]], by_page: bool, total_visitors: int) -> int | float:
    visits = list({id(v): v for v, _, _ in rows}.values())
    if name == "visitors":
        return len({v.user for v in visits})
    if name == "visits":
        return len(visits)
    if name in ("pageviews", "events"):
        return len(rows)
    if name == "percentage":
        return round(len({v.user for v in visits}) / total_visitors * 100, 1) if total_visitors else 0.0
    if name == "views_per_visit":
        return round(sum(len(v.pages) for v in visits) / len(visits), 2) if visits else 0.0
    if name == "bounce_rate":  # by page: only the visits that entered there, as Plausible counts it
        entered = list({id(v): v for v, _, i in rows if i == 0 or not by_page}.values())
        return round(sum(len(v.pages) == 1 for v in entered) / len(entered) * 100) if entered else 0
    return round(sum(v.duration for v in visits) / len(visits)) if visits else 0  # visit_duration


def _month_end(day: date) -> date:
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - timedelta(days=1)
