"""Secrets stay out of the logs: request URLs of HTTP clients and the query strings of links."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from app.core.log_setup import configure_logging
from tests.fake_http import FakeServer


@pytest.fixture
def info_logging() -> None:
    configure_logging("INFO")


def test_http_clients_do_not_log_request_urls(info_logging: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with FakeServer() as server, httpx.Client() as client:
        client.post(f"{server.url}/api/webhooks/123/very-secret-webhook-token", json={})
    assert "very-secret-webhook-token" not in caplog.text


@pytest.fixture
def uvicorn_loggers() -> Iterator[None]:
    """uvicorn configures its loggers when a server is made: put them back afterwards."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        name: (lg.level, lg.propagate, lg.disabled, list(lg.handlers), list(lg.filters))
        for name in names
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (level, propagate, disabled, handlers, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled
        logger.handlers[:], logger.filters[:] = handlers, filters


def test_the_access_log_drops_query_strings(uvicorn_loggers: None) -> None:
    # as `opsdesk run` does it: our logging first, then uvicorn's own log config on top
    configure_logging("INFO")
    uvicorn.Config(app=lambda: None, log_level="info")
    access = logging.getLogger("uvicorn.access")
    stream = io.StringIO()
    access.addHandler(logging.StreamHandler(stream))
    access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/approvals/0b7c?t=signed-link-token&do=approve", "1.1", 200
    )
    assert "signed-link-token" not in stream.getvalue()
    assert "GET /approvals/0b7c?…" in stream.getvalue()
