"""The HTTP API (DESIGN.md's contract). Errors are JSON `{"error": {"code", "message", "request_id"}}`."""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.approval_queue import ApprovalQueue
from app.database import Database
from app.errors import DatabaseError, InvalidInput, OpsdeskError, Unauthorized
from app.models import ActionPage, ActionRecord, ActionRequest, DecisionRequest, Status, SubmitResult, Tier
from app.settings import Settings

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_body(code: str, message: str, request_id: str, details: dict[str, Any] | None = None) -> dict:
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
            response = JSONResponse(error_body("payload_too_large",
                                               f"the request body is over {self.max_bytes} bytes",
                                               request_id), status_code=413)
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


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def create_app(settings: Settings, db: Database) -> FastAPI:
    queue = ApprovalQueue(db, settings)
    app = FastAPI(title="opsdesk", version="0.1.0", docs_url="/docs", redoc_url=None)
    app.add_middleware(RequestIdMiddleware, max_bytes=settings.max_request_bytes)
    app.state.settings = settings
    app.state.db = db
    app.state.queue = queue

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = settings.ops_api_token
        if expected is None:
            raise Unauthorized("the API is locked: OPS_API_TOKEN is not configured")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("missing Bearer token")
        if not hmac.compare_digest(given.strip().encode(), expected.get_secret_value().encode()):
            raise Unauthorized("wrong API token")

    auth = [Depends(require_token)]

    @app.exception_handler(OpsdeskError)
    async def _opsdesk_error(request: Request, exc: OpsdeskError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("request %s failed: %s", request_id_of(request), exc)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse(error_body(exc.code, exc.message, request_id_of(request), exc.details),
                            status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            return JSONResponse(error_body("malformed_json", "the request body is not valid JSON",
                                           request_id_of(request)), status_code=400)
        shown = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
                 for err in errors]
        return JSONResponse(error_body("invalid_input", "the request does not fit the schema",
                                       request_id_of(request), {"errors": shown}), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail), request_id_of(request)),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s crashed", request_id_of(request))
        return JSONResponse(error_body("internal_error", "opsdesk hit an unexpected error; see the logs "
                                       "for this request id", request_id_of(request)), status_code=500)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        integrations = {
            "anthropic": settings.anthropic_api_key is not None,
            "hubspot": settings.hubspot_private_app_token is not None,
            "brevo": settings.brevo_api_key is not None,
            "notion": settings.notion_api_key is not None,
            "discord": settings.discord_webhook_url is not None,
        }
        body: dict[str, Any] = {
            "integrations": {name: "configured" if on else "not_configured"
                             for name, on in integrations.items()},
        }
        try:
            health = db.call("health")
        except DatabaseError as exc:
            body |= {"status": "degraded", "database": {"ok": False, "mode": settings.database_mode,
                                                        "error": exc.message}}
            return JSONResponse(body, status_code=503)
        body |= {"status": "ok", "database": {"ok": True, "mode": settings.database_mode, **health}}
        return JSONResponse(body)

    @app.get("/approvals", response_model=ActionPage, dependencies=auth)
    def list_approvals(
        status_: Annotated[Status | None, Query(alias="status")] = None,
        tier: Tier | None = None,
        agent: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> ActionPage:
        return queue.list(status=status_, tier=tier, agent=agent, limit=limit, offset=offset)

    @app.get("/approvals/{action_id}", dependencies=auth)
    def show_approval(action_id: UUID) -> dict[str, Any]:
        return queue.get(action_id)

    @app.post("/approvals/{action_id}/decision", response_model=ActionRecord, dependencies=auth)
    def decide(action_id: UUID, decision: DecisionRequest, request: Request) -> ActionRecord:
        if not decision.decided_by:
            raise InvalidInput("decided_by is required: say who decides")
        return queue.decide(action_id, decision, actor=decision.decided_by,
                            request_id=request_id_of(request))

    @app.post("/actions", response_model=SubmitResult, status_code=status.HTTP_201_CREATED,
              dependencies=auth)
    def submit_action(action: ActionRequest, request: Request) -> SubmitResult:
        return queue.submit(action, actor="api", request_id=request_id_of(request))

    return app

