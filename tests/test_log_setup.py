"""Secrets stay out of the logs: request URLs of HTTP clients and the query strings of links."""

from __future__ import annotations

import logging

import httpx
import pytest

from app.log_setup import configure_logging
from tests.fake_http import FakeServer


@pytest.fixture
def info_logging() -> None:
    configure_logging("INFO")


def test_http_clients_do_not_log_request_urls(info_logging: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with FakeServer() as server, httpx.Client() as client:
        client.post(f"{server.url}/api/webhooks/123/very-secret-webhook-token", json={})
    assert "very-secret-webhook-token" not in caplog.text


def test_the_access_log_drops_query_strings(info_logging: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    access = logging.getLogger("uvicorn.access")
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                "/approvals/0b7c?t=signed-link-token&do=approve", "1.1", 200)
    assert "signed-link-token" not in caplog.text
    assert "GET /approvals/0b7c?…" in caplog.text
