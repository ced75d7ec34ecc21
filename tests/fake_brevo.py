"""A fake Brevo on 127.0.0.1 that speaks `POST /v3/smtp/email` as Brevo does: the `api-key`
header, `{"messageId"}` for one recipient or `{"messageIds"}` (one per version) with 201, error
bodies `{"code", "message"}`, and a repeated `idempotencyKey` processed once. Tests script failures
with `script` and mark addresses Brevo would refuse with `invalid`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from tests.fake_http import FakeServer, Recorded, Reply

API_KEY = "xkeysib-test-0123456789abcdef"
SENDER = "ops@example.com"

Scripted = Reply | Callable[[Recorded], Reply]


class FakeBrevo:
    def __init__(self) -> None:
        self.server = FakeServer(self._respond)
        self.script: list[Scripted] = []  # answers given, in order, before any request is accepted
        self.invalid: set[str] = set()
        self.hold = False  # hold accepted requests open until the server stops (crash tests)
        self.on_request: Callable[[Recorded], None] | None = None  # runs first for every send (slow Brevo)
        self.accepted: dict[str, list[str]] = {}  # idempotencyKey -> the message ids it got
        self.delivered: list[str] = []  # every address of every request accepted
        self.repeats = 0  # requests whose idempotencyKey had been accepted before
        self.accepted_one = threading.Event()  # set once a request is accepted (after `delivered`)
        self._lock = threading.Lock()

    def __enter__(self) -> FakeBrevo:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return f"{self.server.url}/v3"

    @property
    def requests(self) -> list[Recorded]:
        return self.server.requests

    def _respond(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != "/v3/smtp/email":
            return Reply(404, {"code": "document_not_found", "message": "Not found"})
        if request.headers.get("api-key") != API_KEY:
            return Reply(401, {"code": "unauthorized", "message": "Key not found"})
        if self.on_request is not None:
            self.on_request(request)
        with self._lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            return scripted if isinstance(scripted, Reply) else scripted(request)
        body: dict[str, Any] = request.json()
        versions = body.get("messageVersions") or []
        emails = [a["email"] for a in body.get("to") or []] + [a["email"] for v in versions for a in v["to"]]
        if any(email in self.invalid for email in emails):
            return Reply(400, {"code": "invalid_parameter", "message": "email is not valid in to"})
        key = body["headers"]["idempotencyKey"]
        with self._lock:
            if key in self.accepted:
                self.repeats += 1
            else:
                self.accepted[key] = [f"<{uuid4()}@smtp-relay.mailin.fr>" for _ in versions or [None]]
                self.delivered.extend(emails)
            ids = self.accepted[key]
        self.accepted_one.set()
        if self.hold:
            self.server.release.wait(60)
        return Reply(201, {"messageIds": ids} if versions else {"messageId": ids[0]})
