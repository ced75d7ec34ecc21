"""`POST /actions` (Bearer): submit an action from outside, through the same policy, queue and
audit as the agents' actions."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.core.models import ActionRequest, SubmitResult
from app.web.deps import ApiAuth, QueueDep, RequestId
from app.web.request_guard import CheckedRoute

router = APIRouter(route_class=CheckedRoute)  # every input checked (app.web.request_guard)


@router.post("/actions", response_model=SubmitResult, status_code=status.HTTP_201_CREATED, dependencies=[ApiAuth])
def submit_action(action: ActionRequest, queue: QueueDep, request_id: RequestId) -> SubmitResult:
    return queue.submit(action, actor="api", request_id=request_id)
