"""The approvals: `GET /approvals` (Bearer) lists them; `GET /approvals/{id}` is the review page
for a signed link (and changes nothing) or the action as JSON for the API token; `POST
/approvals/{id}/decision` takes the review page's form or JSON; `/approvals/inbox` is the page
deciding several at once."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.approvals.pages.base import is_link_request
from app.core.errors import InvalidInput
from app.core.models import ActionPage, ActionRecord, ApiDecisionRequest, Status, Tier
from app.web.deps import (
    ApiAuth,
    ApprovalsDep,
    Authorization,
    InboxDep,
    LinkToken,
    QueueDep,
    ReviewDep,
    SettingsDep,
    check_api_token,
)
from app.web.request_guard import CheckedRoute

router = APIRouter(route_class=CheckedRoute)  # every input checked (app.web.request_guard)

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


@router.get("/approvals", response_model=ActionPage, dependencies=[ApiAuth])
def list_approvals(
    queue: QueueDep,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    tier: Tier | None = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ActionPage:
    return queue.list(status=status_, tier=tier, agent=agent, limit=limit, offset=offset)


# Registered before /approvals/{action_id}, which would otherwise read "inbox" as an id.
@router.get("/approvals/inbox", response_class=Response, summary="The inbox page (signed inbox link)")
def inbox_page(request: Request, inbox: InboxDep, t: LinkToken) -> Response:
    return inbox.show(request, t)


@router.post("/approvals/inbox", response_class=Response, summary="Decide several actions (inbox form)")
async def inbox_decide(request: Request, inbox: InboxDep) -> Response:
    form = await request.form()
    items = [item for item in form.getlist("items") if isinstance(item, str)]  # a file is no item
    return await run_in_threadpool(inbox.decide, request, form, items)


@router.get(
    "/approvals/{action_id}",
    response_model=None,
    summary="The review page (signed link, HTML) or the action as JSON (Bearer)",
)
def show_approval(
    action_id: UUID,
    request: Request,
    settings: SettingsDep,
    queue: QueueDep,
    review: ReviewDep,
    t: LinkToken | None = None,
    do: Literal["approve", "reject"] | None = None,
    authorization: Authorization = None,
) -> Any:
    if t is not None:
        return review.show(request, action_id, t, do)  # never changes anything
    check_api_token(settings, authorization)
    return queue.get(action_id)


@router.post(
    "/approvals/{action_id}/decision",
    response_model=None,
    openapi_extra=_DECISION_BODIES,
    summary="Decide: the review page's form (signed token) or JSON (Bearer)",
    responses={
        200: {"model": ActionRecord, "description": "JSON: the decided action"},
        303: {"description": "form post: decided; back to the review page"},
    },
)
async def decide(
    action_id: UUID,
    request: Request,
    approvals: ApprovalsDep,
    authorization: Authorization = None,
) -> Any:
    if is_link_request(request):
        form = await request.form()
        return await run_in_threadpool(approvals.review.decide, request, action_id, form)
    check_api_token(approvals.settings, authorization)
    try:
        decision = ApiDecisionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from exc
    if not decision.decided_by:
        raise InvalidInput("decided_by is required: say who decides")
    # the name is the caller's word; the audit shows it came with the API token
    actor = f"api:{decision.decided_by}"
    queue, request_id = approvals.queue, approvals.request_id
    if approvals.decisions is not None and queue.decides_in_one_call(decision):
        # the common case: one call on the event loop's own pool, shared with concurrent decisions
        record = await queue.decide_now(
            approvals.decisions, action_id, decision, actor=actor, channel="api", request_id=request_id
        )
    else:
        record = await run_in_threadpool(
            queue.decide_with_pin,
            action_id,
            decision,
            actor=actor,
            channel="api",
            pin=decision.pin,
            request_id=request_id,
        )
    return Response(record.model_dump_json(), media_type="application/json")
