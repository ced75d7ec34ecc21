"""Logging that keeps secrets out of the logs.

Two things would otherwise write them: HTTP client libraries log every request URL at INFO (a
Discord webhook URL carries its token), and uvicorn's access log writes each request's query
string (a signed approval link carries its token in `?t=`: whoever reads the log could approve).
"""

from __future__ import annotations

import logging

# libraries that log full request URLs at INFO
_URL_LOGGERS = ("httpx", "httpcore", "urllib3", "notion_client", "anthropic", "hubspot", "sib_api_v3_sdk")


class AccessLogRedactor(logging.Filter):
    """uvicorn.access records carry (client, method, path with query, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?…", args[3], args[4])
        return True


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet = max(logging.WARNING, logging.getLevelName(level))
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedactor) for f in access.filters):
        access.addFilter(AccessLogRedactor())
