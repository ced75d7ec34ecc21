"""Every error the API answers, in one shape: JSON `{"error": {"code", "message", "request_id"}}`
for API callers, a page for a person's browser (a signed link's request). The request id comes from
RequestIdMiddleware, which also refuses a body over MAX_REQUEST_BYTES."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.approvals.pages.base import Pages, is_link_request
from app.core.errors import OpsdeskError, Unauthorized, describe
from app.web.deps import request_id_of
from integrations.errors import IntegrationError
from integrations.untrusted import json_safe

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_body(code: str, message: str, request_id: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if details:
        error["details"] = details
    return {"error": error}


class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-ID when sane) for errors and the audit,
    and limits the body: a declared Content-Length over the limit is refused before reading, and
    a chunked body is counted as it streams (the 413 then goes through the exception handlers)."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(
                error_body("payload_too_large", f"the request body is over {self.max_bytes} bytes", request_id),
                status_code=413,
            )
            await response(scope, receive, send_with_id)
            return

        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise StarletteHTTPException(413, f"the request body is over {self.max_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send_with_id)


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if is_link_request(request):  # a person's browser: a page, not JSON
        pages: Pages = request.app.state.pages
        return pages.message(
            "Something went wrong" if status_code >= 500 else "This request was refused",
            message,
            status_code=status_code,
            notes=[f"Request id: {request_id_of(request)}"],
        )
    # json_safe: an error body must never fail to serialise what it echoes (a NaN, say)
    return JSONResponse(
        json_safe(error_body(code, message, request_id_of(request), details)),
        status_code=status_code,
        headers=headers,
    )


async def known_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpsdeskError | IntegrationError)  # registered for those two roots only
    info = describe(exc)
    if info.status_code >= 500:
        log.error("request %s failed: %s", request_id_of(request), exc)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return error_response(request, info.status_code, info.code, info.message, info.details, headers)


async def invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for it alone
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(request, 400, "malformed_json", "the request body is not valid JSON")
    shown = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")} for err in errors]
    first = shown[0] if shown else None
    where = f" ({'.'.join(map(str, first['loc']))}: {first['msg']})" if first else ""
    return error_response(
        request, 422, "invalid_input", f"the request does not fit the schema{where}", {"errors": shown}
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # registered for it alone
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, str(exc.detail))


async def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("request %s crashed", request_id_of(request))
    return error_response(
        request, 500, "internal_error", "opsdesk hit an unexpected error; see the logs for this request id"
    )


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OpsdeskError, known_error)
    app.add_exception_handler(IntegrationError, known_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
