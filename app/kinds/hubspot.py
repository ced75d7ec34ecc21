"""The HubSpot action kinds: `hubspot.note`, `hubspot.task`, `hubspot.deal_stage`.

HubSpot has no idempotency key for creating notes or tasks, so each one carries a marker derived
from the action (`engagement_marker`). The executor retries an action after a failure; on any
attempt after the first, the handler searches for its marker before creating, and returns what an
earlier attempt made instead of making a second one. The client makes sure that search happens only
after HubSpot's search index has caught up (HUBSPOT_WRITE_RECHECK_SECONDS).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.core.errors import InvalidInput
from app.core.models import Impact
from app.core.settings import Settings
from app.kinds.base import ActionKind
from app.kinds.context import HandlerContext
from integrations.errors import PermanentError
from integrations.hubspot_models import Engagement, EngagementKind

HubSpotId = Annotated[str, Field(pattern=r"^[0-9]{1,20}$")]
StageId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
EngagementBody = Annotated[str, Field(max_length=60_000)]  # hs_note_body holds 65,536; room for the marker

# The stages of HubSpot's default deal pipeline, in order. A custom pipeline's stage ids are not
# here, so a move between them cannot be shown to go forward and counts as a regression.
DEFAULT_DEAL_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)


class HubSpotNotePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object_type: Literal["contact", "deal"]
    object_id: HubSpotId
    body: EngagementBody = Field(min_length=1)


class HubSpotTaskPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object_type: Literal["contact", "deal"]
    object_id: HubSpotId
    subject: str = Field(min_length=1, max_length=500)
    body: EngagementBody = ""
    due: AwareDatetime
    priority: Literal["LOW", "MEDIUM", "HIGH"] = "MEDIUM"
    owner_id: HubSpotId | None = None  # the HubSpot user the task is assigned to


class DealStagePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deal_id: HubSpotId
    from_stage: StageId  # checked against the deal when the action runs
    to_stage: StageId

    @model_validator(mode="after")
    def _a_change(self) -> DealStagePayload:
        if self.from_stage == self.to_stage:
            raise ValueError("from_stage and to_stage are the same")
        return self


def is_stage_regression(from_stage: str, to_stage: str) -> bool:
    """Backwards in the pipeline, or to closed-lost: DESIGN.md counts both as irreversible."""
    if to_stage == "closedlost":
        return True
    if from_stage not in DEFAULT_DEAL_STAGES or to_stage not in DEFAULT_DEAL_STAGES:
        return True
    return DEFAULT_DEAL_STAGES.index(to_stage) < DEFAULT_DEAL_STAGES.index(from_stage)


def deal_stage_impact(payload: Mapping[str, Any], impact: Impact) -> Impact:
    if is_stage_regression(payload["from_stage"], payload["to_stage"]):
        return impact.model_copy(update={"reversible": False})
    return impact


# What reads as money in a task's text: an amount with a currency sign or word ($6,000, 60 USD, 6k
# dollars), or a currency word or sign alone ("six thousand dollars").
_MONEY = re.compile(
    r"(?i)(?:us\$|[$\u20ac\u00a3])\s?\d[\d,]*(?:\.\d+)?(?:\s?[km]\b)?"
    r"|\d[\d,]*(?:\.\d+)?\s?[km]?\s?(?:usd|eur|gbp|dollars?|euros?|pounds?|bucks)\b"
    r"|\b(?:usd|eur|gbp|dollars?|euros?|pounds?|bucks)\b|[$\u20ac\u00a3]"
)


def _money_in(text: str) -> Counter[str]:
    return Counter("".join(found.lower().split()) for found in _MONEY.findall(text or ""))


def no_money_added(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """A task asks a person to do something, paying included, and the policy tiered it by the money
    its facts carry (`impact.cost_usd`, from the amount the agent validated). An edit must not make
    its text ask for money those facts do not carry ("$60" edited to "$6,000"): the money a task's
    text names may be kept or removed, never added. A different amount is a new draft: reject this
    one with the amount in the reason."""
    for field in ("subject", "body"):
        added = _money_in(after.get(field) or "") - _money_in(before.get(field) or "")
        if added:
            raise InvalidInput(
                f"{field}: the edit writes {', '.join(sorted(added))}, money this task's facts do not carry "
                "(the policy tiered it without it); a task's money cannot be edited: reject it with the "
                "amount you want in the reason",
                details={"field": field, "added": sorted(added)},
            )


def engagement_marker(action_key: str) -> str:
    """The token written into a note or task so a later attempt can find it: letters and digits
    only, so HubSpot's search tokenizer keeps it whole for CONTAINS_TOKEN."""
    return "opsdesk" + "".join(ch for ch in action_key.lower() if ch.isalnum())


def _made_earlier(ctx: HandlerContext, kind: EngagementKind, marker: str) -> Engagement | None:
    """An earlier attempt may have created it before failing in a way that hid the answer."""
    if ctx.action.attempts <= 1:
        return None
    ctx.heartbeat()
    return ctx.clients.get(Settings.hubspot_client).find_engagement(kind, marker)


def _engagement_result(engagement: Engagement, object_type: str, object_id: str, *, created: bool) -> dict[str, Any]:
    return {
        "hubspot_id": engagement.id,
        "kind": engagement.kind,
        "object_type": object_type,
        "object_id": object_id,
        "created": created,
    }


def create_note(ctx: HandlerContext) -> dict[str, Any]:
    payload = HubSpotNotePayload.model_validate(ctx.action.requested_action)
    marker = engagement_marker(ctx.action.idempotency_key)
    earlier = _made_earlier(ctx, "note", marker)
    if earlier is not None:
        return _engagement_result(earlier, payload.object_type, payload.object_id, created=False)
    hubspot = ctx.clients.get(Settings.hubspot_client)
    ctx.heartbeat()
    ctx.mark_dispatched()
    note = hubspot.create_note(
        object_type=payload.object_type,
        object_id=payload.object_id,
        body=payload.body,
        marker=marker,
        timestamp=datetime.now(UTC),
    )
    return _engagement_result(note, payload.object_type, payload.object_id, created=True)


def create_task(ctx: HandlerContext) -> dict[str, Any]:
    payload = HubSpotTaskPayload.model_validate(ctx.action.requested_action)
    marker = engagement_marker(ctx.action.idempotency_key)
    earlier = _made_earlier(ctx, "task", marker)
    if earlier is not None:
        return _engagement_result(earlier, payload.object_type, payload.object_id, created=False)
    hubspot = ctx.clients.get(Settings.hubspot_client)
    ctx.heartbeat()
    ctx.mark_dispatched()
    task = hubspot.create_task(
        object_type=payload.object_type,
        object_id=payload.object_id,
        subject=payload.subject,
        body=payload.body,
        due=payload.due,
        priority=payload.priority,
        marker=marker,
        owner_id=payload.owner_id,
    )
    return _engagement_result(task, payload.object_type, payload.object_id, created=True)


def change_deal_stage(ctx: HandlerContext) -> dict[str, Any]:
    """Moves the deal only from the stage the approval was for; already there counts as done.
    A deal that moved elsewhere since goes back to a person as the move from where it is now (the
    policy tiers that move again: from there it may be a regression)."""
    payload = DealStagePayload.model_validate(ctx.action.requested_action)
    hubspot = ctx.clients.get(Settings.hubspot_client)
    ctx.heartbeat()
    deal = hubspot.get_deal(payload.deal_id)
    result = {"deal_id": payload.deal_id, "from_stage": payload.from_stage, "to_stage": payload.to_stage}
    if deal.stage == payload.to_stage:
        return {**result, "changed": False}
    if deal.stage != payload.from_stage:
        why = f"deal {payload.deal_id} is now at stage {deal.stage!r}, not {payload.from_stage!r} as approved"
        try:
            moved = DealStagePayload.model_validate(
                {"deal_id": payload.deal_id, "from_stage": deal.stage, "to_stage": payload.to_stage}
            )
        except ValidationError as exc:  # a stage id this kind cannot express: nothing to ask anyone
            raise PermanentError(f"{why}; left as it is", system="hubspot") from exc
        ctx.send_back(moved.model_dump(mode="json"), why)
    ctx.heartbeat()
    ctx.mark_dispatched()
    hubspot.update_deal_stage(payload.deal_id, payload.to_stage)
    return {**result, "changed": True}


HUBSPOT_KINDS: tuple[ActionKind, ...] = (
    ActionKind(
        name="hubspot.note",
        description="Add a note to a HubSpot contact or deal",
        payload_model=HubSpotNotePayload,
        handler=create_note,
        editable=frozenset({"body"}),
    ),
    ActionKind(
        name="hubspot.task",
        description="Create a HubSpot task on a contact or deal",
        payload_model=HubSpotTaskPayload,
        handler=create_task,
        editable=frozenset({"subject", "body", "due"}),
        check_edit=no_money_added,
    ),
    ActionKind(
        name="hubspot.deal_stage",
        description="Move a HubSpot deal to another stage (backwards or to closed-lost: at least HIGH)",
        payload_model=DealStagePayload,
        handler=change_deal_stage,
        impact_for=deal_stage_impact,
    ),
)
