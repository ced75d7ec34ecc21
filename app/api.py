"""The HTTP API (DESIGN.md's contract). Errors are JSON `{"error": {"code", "message", "request_id"}}`."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api_auth import check_api_token
from app.approval_queue import ApprovalQueue
from app.database import Database
from app.errors import DatabaseError, InvalidInput, OpsdeskError, Unauthorized, describe
from app.inbox_pages import InboxPages
from app.memory_api import memory_health
from app.memory_api import router as memory_router
from app.models import ActionPage, ActionRecord, ActionRequest, ApiDecisionRequest, Status, SubmitResult, Tier
from app.reports_api import router as reports_router
from app.request_guard import CheckedRoute
from app.review_pages import ReviewPages
from app.settings import Settings
from app.untrusted import json_safe
from app.web_pages import Pages, is_link_request
from app.webhooks_api import router as webhooks_router
from integrations.errors import IntegrationError

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


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


LinkToken = Annotated[str, Query(min_length=1, max_length=4000, description="the signed link token")]

# The decision endpoint takes either body; FastAPI cannot declare two, so the schema is given here.
_DECISION_BODIES = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ApiDecisionRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["t", "decision", "reviewer"],
                    "properties": {
                        "t": {"type": "string"},
                        "decision": {"enum": ["approve", "modify", "reject"]},
                        "reviewer": {"type": "string"},
                        "reason": {"type": "string"},
                        "pin": {"type": "string"},
                    },
                    "additionalProperties": {"type": "string", "description": "edit.<field>: an edited field"},
                }
            },
        },
    }
}


def create_app(settings: Settings, db: Database) -> FastAPI:
    queue = ApprovalQueue(db, settings)
    # /docs loads Swagger UI from a CDN onto the approval pages' origin: only where API_DOCS allows
    app = FastAPI(title="opsdesk", version="0.1.0", docs_url="/docs" if settings.docs_enabled else None, redoc_url=None)
    app.router.route_class = CheckedRoute  # every input checked before a route reads it (app.request_guard)
    app.add_middleware(RequestIdMiddleware, max_bytes=settings.max_request_bytes)
    app.state.settings = settings
    app.state.db = db
    app.state.queue = queue
    app.include_router(webhooks_router)  # POST /webhooks/hubspot: HubSpot's v3 signature, not a token
    app.include_router(memory_router)  # GET /memory/search (Bearer)
    app.include_router(reports_router)  # GET /reports/daily (Bearer)
    pages = Pages(settings)
    review = ReviewPages(settings, queue, pages)
    inbox = InboxPages(settings, queue, pages)

    def error_response(
        request: Request,
        status_code: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        if is_link_request(request):  # a person's browser: a page, not JSON
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

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        check_api_token(settings, authorization)

    auth = [Depends(require_token)]

    @app.exception_handler(IntegrationError)
    @app.exception_handler(OpsdeskError)
    async def _known_error(request: Request, exc: OpsdeskError | IntegrationError) -> Response:
        info = describe(exc)
        if info.status_code >= 500:
            log.error("request %s failed: %s", request_id_of(request), exc)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return error_response(request, info.status_code, info.code, info.message, info.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            return error_response(request, 400, "malformed_json", "the request body is not valid JSON")
        shown = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")} for err in errors
        ]
        first = shown[0] if shown else None
        where = f" ({'.'.join(map(str, first['loc']))}: {first['msg']})" if first else ""
        return error_response(
            request, 422, "invalid_input", f"the request does not fit the schema{where}", {"errors": shown}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return error_response(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("request %s crashed", request_id_of(request))
        return error_response(
            request, 500, "internal_error", "opsdesk hit an unexpected error; see the logs for this request id"
        )

    @app.get("/healthz")
    def healthz(authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
        """The status and each part's state for anyone (a load balancer, a monitor); the counts and
        the database's error text only with the API token: they tell an outsider too much."""
        if authorization is not None:
            require_token(authorization)  # a wrong token is refused, not quietly shown less
        integrations = {
            "anthropic": settings.anthropic_api_key is not None,
            "hubspot": settings.hubspot_private_app_token is not None,
            "brevo": settings.brevo_api_key is not None,
            "notion": settings.notion_api_key is not None,
            "discord": settings.discord_webhook_url is not None,
        }
        body: dict[str, Any] = {
            "integrations": {name: "configured" if on else "not_configured" for name, on in integrations.items()},
        }
        detailed = authorization is not None
        try:
            health = db.call("health")
        except DatabaseError as exc:
            database: dict[str, Any] = {"ok": False, "mode": settings.database_mode}
            if detailed:
                database["error"] = exc.message
            body |= {"status": "degraded", "database": database}
            return JSONResponse(body, status_code=503)
        body |= {
            "status": "ok",
            "database": {"ok": True, "mode": settings.database_mode, **(health if detailed else {})},
            "memory": memory_health(db, settings, detailed=detailed),
        }
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

    # Registered before /approvals/{action_id}, which would otherwise read "inbox" as an id.
    @app.get("/approvals/inbox", response_class=Response, summary="The inbox page (signed inbox link)")
    def inbox_page(request: Request, t: LinkToken) -> Response:
        return inbox.show(request, t)

    @app.post("/approvals/inbox", response_class=Response, summary="Decide several actions (inbox form)")
    async def inbox_decide(request: Request) -> Response:
        form = await request.form()
        return await run_in_threadpool(inbox.decide, request, form, form.getlist("items"))

    @app.get(
        "/approvals/{action_id}",
        response_model=None,
        summary="The review page (signed link, HTML) or the action as JSON (Bearer)",
    )
    def show_approval(
        action_id: UUID,
        request: Request,
        t: LinkToken | None = None,
        do: Literal["approve", "reject"] | None = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Any:
        if t is not None:
            return review.show(request, action_id, t, do)  # never changes anything
        require_token(authorization)
        return queue.get(action_id)

    @app.post(
        "/approvals/{action_id}/decision",
        response_model=None,
        openapi_extra=_DECISION_BODIES,
        summary="Decide: the review page's form (signed token) or JSON (Bearer)",
        responses={
            200: {"model": ActionRecord, "description": "JSON: the decided action"},
            303: {"description": "form post: decided; back to the review page"},
        },
    )
    async def decide(action_id: UUID, request: Request, authorization: Annotated[str | None, Header()] = None) -> Any:
        if is_link_request(request):
            form = await request.form()
            return await run_in_threadpool(review.decide, request, action_id, form)
        require_token(authorization)
        try:
            decision = ApiDecisionRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from exc
        if not decision.decided_by:
            raise InvalidInput("decided_by is required: say who decides")
        # the name is the caller's word; the audit shows it came with the API token
        record = await run_in_threadpool(
            queue.decide_with_pin,
            action_id,
            decision,
            actor=f"api:{decision.decided_by}",
            channel="api",
            pin=decision.pin,
            request_id=request_id_of(request),
        )
        return JSONResponse(record.model_dump(mode="json"))

    @app.post("/actions", response_model=SubmitResult, status_code=status.HTTP_201_CREATED, dependencies=auth)
    def submit_action(action: ActionRequest, request: Request) -> SubmitResult:
        return queue.submit(action, actor="api", request_id=request_id_of(request))

    return app
