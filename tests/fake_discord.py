"""A fake Discord webhook on 127.0.0.1 that answers like Discord: execute with `wait=true` returns
a message object, edit replaces a stored message. It records every request that reaches it, can
be scripted to answer 429 / 5xx / 4xx for the next requests (a 5xx after posting all the same, as a
gateway's 502 or 504 can, or no answer at all until the client's read timeout), checks the
documented limits (400 50035 like Discord), and can go down (connection refused) and come back on
the same port. A post
with files comes as multipart/form-data (`payload_json` and `files[n]`), as Discord takes it."""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

WEBHOOK_PATH = "/api/webhooks/123456789012345678/fake-token"
_MESSAGE_PATH = re.compile(rf"^{WEBHOOK_PATH}/messages/(\d+)$")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def limit_violations(payload: dict[str, Any]) -> list[str]:
    """Every documented limit a payload breaks, counted both as code points and UTF-16 units."""
    problems = []

    def check(what: str, text: str, limit: int) -> None:
        if max(len(text), utf16_len(text)) > limit:
            problems.append(f"{what}: {len(text)} > {limit}")
        if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
            problems.append(f"{what}: lone surrogate")

    check("content", payload.get("content") or "", 2000)
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        problems.append(f"{len(embeds)} embeds > 10")
    total = 0
    for n, embed in enumerate(embeds):
        texts = [
            ("title", embed.get("title", ""), 256),
            ("description", embed.get("description", ""), 4096),
            ("footer", (embed.get("footer") or {}).get("text", ""), 2048),
        ]
        fields = embed.get("fields") or []
        if len(fields) > 25:
            problems.append(f"embed {n}: {len(fields)} fields > 25")
        for f in fields:
            if not f["name"].strip() or not f["value"].strip():
                problems.append(f"embed {n}: empty field")
            texts += [("field name", f["name"], 256), ("field value", f["value"], 1024)]
        for what, text, limit in texts:
            check(f"embed {n} {what}", text, limit)
            total += max(len(text), utf16_len(text))
        if "url" in embed:
            problems.append(f"embed {n} has a url")
    if total > 6000:
        problems.append(f"embeds total {total} > 6000")
    for row in payload.get("components") or []:
        for button in row["components"]:
            check("button label", button.get("label", ""), 80)
            check("button url", button.get("url", ""), 512)
    return problems


@dataclass
class Upload:
    filename: str
    content_type: str
    content: bytes


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]
    files: dict[str, Upload] = field(default_factory=dict)  # multipart field name -> file
    content_type: str = ""

    @property
    def message_id(self) -> str | None:
        match = _MESSAGE_PATH.match(self.path)
        return match.group(1) if match else None


@dataclass
class Answer:
    status: int
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    lands: bool = False  # a POST answered this way was posted all the same (a gateway's 502 or 504)
    silent: bool = False  # no answer until the client gives up (its read timeout)


def gateway_error(status: int, *, landed: bool) -> Answer:
    return Answer(status, {"message": f"{status}: Gateway error", "code": 0}, lands=landed)


def no_answer(*, landed: bool) -> Answer:
    return Answer(504, lands=landed, silent=True)


def rate_limited(retry_after: float | None, *, header: str | None = None) -> Answer:
    body: dict[str, Any] = {"message": "You are being rate limited.", "global": False}
    if retry_after is not None:
        body["retry_after"] = retry_after
    return Answer(429, body, {"Retry-After": header} if header else {})


UNKNOWN_WEBHOOK = Answer(404, {"message": "Unknown Webhook", "code": 10015})


def parse_multipart(content_type: str, raw: bytes) -> tuple[dict[str, Any], dict[str, Upload]]:
    """The JSON of `payload_json` and the uploaded files of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    body: dict[str, Any] = {}
    files: dict[str, Upload] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        content = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(content, bytes)
        filename = part.get_filename()
        if filename is None and name == "payload_json":
            body = json.loads(content)
        elif filename is not None:
            files[name] = Upload(filename, part.get_content_type(), content)
    return body, files


class FakeDiscord:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.scripted: list[Answer] = []  # answered, in order, before behaving normally
        self._ids = itertools.count(1_300_000_000_000_000_001)
        self._lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._released = threading.Event()  # ends every silent answer still waiting

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]

    def edits(self) -> list[Request]:
        return [r for r in self.requests if r.method == "PATCH"]

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self.scripted.extend(answers)

    # --- up and down ---------------------------------------------------------------------------
    def up(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so "down" refuses the very next request
            protocol_version = "HTTP/1.0"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                content_type = self.headers.get("Content-Type", "")
                if content_type.startswith("multipart/form-data"):
                    body, files = parse_multipart(content_type, raw)
                else:
                    body, files = (json.loads(raw) if raw else {}), {}
                request = Request(self.command, parts.path, parse_qs(parts.query), body, files, content_type)
                answer = fake._answer(request)
                if answer.silent:
                    fake._released.wait(30)  # the client times out first; the fake's exit ends the wait
                    return
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PATCH = _handle

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeDiscord:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self.down()

    # --- behaving like Discord ----------------------------------------------------------------
    def _answer(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            if self.scripted:
                answer = self.scripted.pop(0)
                if answer.lands and request.method == "POST" and request.path == WEBHOOK_PATH:
                    self._store(request)
                return answer
            problems = limit_violations(request.body)
            if problems:
                return Answer(400, {"message": "Invalid Form Body", "code": 50035, "errors": problems})
            if request.method == "POST" and request.path == WEBHOOK_PATH:
                if request.query.get("wait") != ["true"]:
                    return Answer(400, {"message": "this fake only answers wait=true", "code": 0})
                return Answer(200, self._store(request))
            if request.method == "PATCH" and request.message_id is not None:
                if request.message_id not in self.messages:
                    return Answer(404, {"message": "Unknown Message", "code": 10008})
                self.messages[request.message_id].update(request.body)
                return Answer(200, self.messages[request.message_id])
            return UNKNOWN_WEBHOOK

    def _store(self, request: Request) -> dict[str, Any]:
        message_id = str(next(self._ids))
        self.messages[message_id] = {"id": message_id, "type": 0, **request.body}
        return self.messages[message_id]
