"""The inbox: `GET /approvals/inbox?t=TOKEN` lists everything pending, oldest first; its form
approves or rejects several LOW/MEDIUM/HIGH actions at once. CRITICAL actions are never in a bulk
decision: each links to its own review page.

Each checked box carries the action's id, the exact draft hash and the round (expiry) the page
showed, and every action is decided through `decide_action` bound to that hash: an action that
changed, was decided or was reopened since the page was loaded is skipped and reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, ValidationError, field_validator

from app.approvals.pages.base import LinkPages, multiline, outcome
from app.approvals.pages.draft_view import Reach, reach
from app.approvals.queue import round_of
from app.core.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from app.core.models import ActionRecord, DecisionRequest, ReviewerName, Status, Tier

INBOX_LIMIT = 200  # one page; the rest follow once these are decided
_ITEM = re.compile(r"^(?P<id>[0-9a-f-]{36})\.(?P<hash>[0-9a-f]{64})\.(?P<round>\d{1,12})$")


@dataclass(frozen=True)
class PostedItem:
    id: UUID
    draft_hash: str
    round: int  # the action's expiry (unix seconds) as shown: it changes when an action is reopened


class InboxForm(BaseModel):
    t: str = Field(min_length=1, max_length=4000)
    decision: Literal["approve", "reject"]
    reviewer: ReviewerName
    reason: str | None = Field(None, max_length=5000)
    items: list[str] = Field(min_length=1, max_length=INBOX_LIMIT)

    @field_validator("items")
    @classmethod
    def _items(cls, values: list[str]) -> list[str]:
        if not all(_ITEM.match(value) for value in values):
            raise ValueError("an item is not one this page offered")
        return values

    def posted(self) -> list[PostedItem]:
        found = [_ITEM.match(value) for value in self.items]
        return [PostedItem(UUID(m["id"]), m["hash"], int(m["round"])) for m in found if m]


@dataclass(frozen=True)
class InboxItem:
    action: ActionRecord
    reach: Reach
    review_url: str
    value: str | None  # the checkbox value; None: not selectable (CRITICAL, or ran out of time)
    note: str


@dataclass(frozen=True)
class ItemResult:
    id: UUID
    summary: str
    text: str


class InboxPages(LinkPages):
    def show(self, request: Request, token: str) -> HTMLResponse:
        now = self.queue.clock()
        refused = self._refused(token, now)
        if refused is not None:
            return refused
        page = self.queue.list(status=Status.PENDING, limit=INBOX_LIMIT)
        return self.pages.render(
            "inbox.html",
            items=[self._item(action, now) for action in page.items],
            total=page.total,
            token=token,
            reviewer=self.reviewer_of(request),
            post_url=self.signer.inbox_decision_url,
        )

    def _refused(self, token: str, now: datetime) -> HTMLResponse | None:
        try:
            self.signer.verify_inbox(token, now=now)
        except Forbidden as exc:
            return self.pages.message(
                "This inbox link is not valid",
                exc.message,
                status_code=403,
                notes=[
                    "Nothing was changed. Get a new one with `opsdesk approvals inbox-link` or from the daily report."
                ],
            )
        except Gone as exc:
            return self.pages.message(
                "This inbox link has expired",
                exc.message,
                status_code=410,
                notes=[
                    "Nothing was changed. Get a new one with `opsdesk approvals inbox-link` or from the daily report."
                ],
            )
        return None

    def _item(self, action: ActionRecord, now: datetime) -> InboxItem:
        url = self.signer.url(action.id, action.draft_hash, "review", action.expires_at or now)
        value: str | None = f"{action.id}.{action.draft_hash}.{round_of(action.expires_at)}"
        note = ""
        if action.risk_level is Tier.CRITICAL:
            value, note = None, "CRITICAL: decide it on its own page"
        elif action.expires_at is not None and action.expires_at <= now:
            value, note = None, "ran out of time"
        return InboxItem(action, reach(action.requested_action, action.estimated_impact), url, value, note)

    def decide(self, request: Request, form: Mapping[str, Any], items: list[str]) -> Response:
        if not self.posted_from_our_pages(request):
            return self.cross_site()
        try:
            posted = InboxForm(
                t=form.get("t", ""),
                decision=form.get("decision", ""),
                reviewer=form.get("reviewer", ""),
                reason=multiline(form.get("reason")) or None,
                items=items,
            )
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            return self.pages.message(
                "The form is not complete", "Nothing was decided.", status_code=422, notes=problems
            )
        refused = self._refused(posted.t, self.queue.clock())
        if refused is not None:
            return refused
        back = self.signer.link("inbox", posted.t)
        if posted.decision == "reject" and not (posted.reason or "").strip():
            return self.pages.message(
                "A rejection needs a reason",
                "Nothing was decided: say why, so the agents can learn from it.",
                status_code=422,
                link=back,
            )

        request_id = getattr(request.state, "request_id", None)
        decided: list[ItemResult] = []
        skipped: list[ItemResult] = []
        for item in posted.posted():
            done, result = self._decide_one(item, posted, request_id)
            (decided if done else skipped).append(result)
        response = self.pages.render(
            "inbox_done.html", decided=decided, skipped=skipped, decision=posted.decision, back=back
        )
        self.remember_reviewer(response, posted.reviewer)
        return response

    def _decide_one(self, item: PostedItem, posted: InboxForm, request_id: str | None) -> tuple[bool, ItemResult]:
        action = self.queue.review_state(item.id).action
        if action is None:
            return False, ItemResult(item.id, "", "no such action any more")
        if action.risk_level is Tier.CRITICAL:
            return False, ItemResult(item.id, action.summary, "CRITICAL: decide it on its own page")
        if action.status is not Status.PENDING:
            return False, ItemResult(item.id, action.summary, outcome(action, self.pages))
        if round_of(action.expires_at) != item.round:
            return False, ItemResult(item.id, action.summary, "reopened since this page was loaded; look again")
        decision = DecisionRequest(decision=posted.decision, reason=posted.reason, decided_by=posted.reviewer)
        try:
            record = self.queue.decide(
                item.id,
                decision,
                actor=posted.reviewer,
                channel="inbox",
                request_id=request_id,
                expected_hash=item.draft_hash,
                expected_round=item.round,
            )
        except Conflict as exc:
            text = {
                "draft_changed": "the draft changed since this page was loaded; look again",
                "reopened": "reopened since this page was loaded; look again",
            }.get(str(exc.details.get("reason")), exc.message)
            return False, ItemResult(item.id, action.summary, text)
        except (Gone, InvalidInput, NotFound) as exc:
            return False, ItemResult(item.id, action.summary, exc.message)
        return True, ItemResult(item.id, action.summary, f"{record.decision} by {record.decided_by}")
