"""The review page behind every approval link, and the form post that decides from it.

`GET /approvals/{id}?t=TOKEN[&do=approve|reject]` only reads: Discord's unfurler and other
link-preview bots fetch these URLs, so showing a page must never decide anything. Only a POST of
the page's own form, carrying the token, decides.

What a token may do follows its purpose: the Review link may approve, edit then approve, or
reject; the one-click Approve link may approve (edited or not) but not reject; the Reject link may
only reject. A page opened by a one-click link offers exactly what its token allows, and the post
is checked against the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError

from app.approvals.links import LinkClaims, Purpose
from app.approvals.pages.base import LinkPages, multiline, outcome
from app.approvals.pages.draft_view import change_rows, draft_view, reach, shown
from app.core.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from app.core.models import ActionRecord, DecisionRequest, ReviewerName, ReviewState, Status

Decision = Literal["approve", "modify", "reject"]
ALLOWED: dict[Purpose, frozenset[str]] = {
    "review": frozenset({"approve", "modify", "reject"}),
    "approve": frozenset({"approve", "modify"}),
    "reject": frozenset({"reject"}),
    "inbox": frozenset(),
}


class LinkDecisionForm(BaseModel):
    """The review page's form, as posted."""

    t: str = Field(min_length=1, max_length=4000)
    decision: Decision
    reviewer: ReviewerName
    reason: str | None = Field(None, max_length=5000)
    pin: str | None = Field(None, max_length=200)
    edits: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class EditField:
    name: str
    value: str
    multiline: bool


@dataclass(frozen=True)
class Forms:
    approve: bool
    modify: bool
    reject: bool
    focus: str | None
    pin_needed: bool
    pin_locked: bool
    pin_for_edits: bool  # an edit, tiered again, would be CRITICAL: the edit form asks for the PIN
    edits: list[EditField]


class ReviewPages(LinkPages):
    def show(self, request: Request, action_id: UUID, token: str, do: str | None) -> HTMLResponse:
        state = self.queue.review_state(action_id)
        checked = self._verify(state, action_id, token)
        if isinstance(checked, HTMLResponse):
            return checked
        return self._review(state, token, checked, do, reviewer=self.reviewer_of(request))

    def _verify(self, state: ReviewState, action_id: UUID, token: str) -> LinkClaims | HTMLResponse:
        """The token's claims, or the page that says why it is refused (403, 404, 409, 410).

        The draft and the round are only checked while the action waits for a decision: once it
        is decided every valid link shows the outcome, whatever was edited since."""
        action = state.action
        draft_hash = expires_at = None
        if action is not None and action.status is Status.PENDING:
            draft_hash, expires_at = action.draft_hash, action.expires_at
        try:
            claims = self.signer.verify(
                token, action_id=action_id, now=state.now, draft_hash=draft_hash, expires_at=expires_at
            )
        except Forbidden as exc:
            return self.pages.message(
                "This link is not valid",
                exc.message,
                status_code=403,
                notes=["Nothing was changed. Use the link from the newest opsdesk message."],
            )
        except Gone as exc:
            decided = action is not None and action.status is not Status.PENDING
            notes = [outcome(action, self.pages)] if action is not None and decided else []
            return self.pages.message(
                "This link has expired", exc.message, status_code=410, notes=[*notes, "Nothing was changed."]
            )
        except Conflict as exc:
            return self.pages.message(
                "This link is out of date",
                exc.message,
                status_code=409,
                notes=[
                    "The draft was edited (or the approval reopened) after this link was issued, so it "
                    "no longer decides anything. Open the newest link for this action."
                ],
            )
        if action is None:
            return self.pages.message(
                "No such action", "There is no action behind this link any more.", status_code=404
            )
        return claims

    def _forms(self, state: ReviewState, purpose: Purpose, do: str | None) -> Forms:
        action = state.action
        assert action is not None
        allowed = ALLOWED[purpose]
        pin_needed = self._pin_needed(action)
        pin_locked = pin_needed and state.pin_failures >= self.settings.approval_pin_max_tries
        kind = self.queue.kinds.get(action.kind)
        values = {name: shown(action.requested_action.get(name)) for name in sorted(kind.editable if kind else ())}
        edits = [EditField(name, value, "\n" in value or len(value) > 80) for name, value in values.items()]
        focus = do if do in allowed else purpose if purpose in ("approve", "reject") else None
        return Forms(
            approve="approve" in allowed and not pin_locked,
            modify="modify" in allowed and bool(edits) and not pin_locked,
            reject="reject" in allowed,
            focus=focus,
            pin_needed=pin_needed,
            pin_locked=pin_locked,
            pin_for_edits=bool(edits) and self.queue.pin_may_follow_an_edit(action),
            edits=edits,
        )

    def _pin_needed(self, action: ActionRecord) -> bool:
        return self.queue.pin_required(action)

    def _review(
        self, state: ReviewState, token: str, claims: LinkClaims, do: str | None, *, reviewer: str
    ) -> HTMLResponse:
        action = state.action
        assert action is not None
        pending = action.status is Status.PENDING
        return self.pages.render(
            "review.html",
            action=action,
            draft=draft_view(action.requested_action),
            reach=reach(action.requested_action, action.estimated_impact),
            confidence=action.metadata.get("confidence"),
            model_id=action.metadata.get("model_id"),
            outcome=None if pending else outcome(action, self.pages),
            diff=change_rows(action.modifications or {}),
            forms=self._forms(state, claims.p, do) if pending else None,
            purpose=claims.p,
            token=token,
            reviewer=reviewer,
            decision_url=self.signer.decision_url(action.id),
        )

    # --- deciding ------------------------------------------------------------------------------
    def decide(self, request: Request, action_id: UUID, form: Mapping[str, Any]) -> Response:
        if not self.posted_from_our_pages(request):
            return self.cross_site()
        try:
            posted = LinkDecisionForm(
                t=form.get("t", ""),
                decision=form.get("decision", ""),
                reviewer=form.get("reviewer", ""),
                reason=multiline(form.get("reason")) or None,
                pin=form.get("pin") or None,
                edits={name: multiline(value) or "" for name, value in self.form_fields(form, "edit.").items()},
            )
        except ValidationError as exc:
            return self._form_invalid(action_id, form, exc)

        state = self.queue.review_state(action_id)
        checked = self._verify(state, action_id, posted.t)
        if isinstance(checked, HTMLResponse):
            return checked
        action = state.action
        assert action is not None
        back = self.signer.link(action_id, posted.t, checked.p)
        if action.status is not Status.PENDING:
            return self.pages.message(
                "Already decided",
                outcome(action, self.pages),
                status_code=409,
                link=back,
                link_text="See the action",
                notes=["Nothing was changed: an action is decided once."],
            )
        if posted.decision not in ALLOWED[checked.p]:
            can = " or ".join(sorted(ALLOWED[checked.p]))
            return self.pages.message(
                "This link cannot do that",
                f"The {checked.p} link can only {can}; nothing was changed. Use the Review link to decide otherwise.",
                status_code=403,
                link=back,
            )

        request_id = getattr(request.state, "request_id", None)
        # the form posts every editable field; only what the reviewer changed is an edit (an empty
        # box shown for a missing field is not a change from null to "")
        edits = {
            name: value for name, value in posted.edits.items() if value != shown(action.requested_action.get(name))
        }
        kind = "approve" if posted.decision == "modify" and not edits else posted.decision
        decision = DecisionRequest(
            decision=kind,
            reason=posted.reason,
            decided_by=posted.reviewer,
            modifications=edits if kind == "modify" else None,
        )
        try:
            pin_needed = self.queue.pin_required_after(action, decision)  # an edit into CRITICAL asks too
        except InvalidInput as exc:
            return self.pages.message(
                "Not decided",
                exc.message,
                status_code=exc.status_code,
                link=back,
                notes=["Nothing was changed; go back and correct the form."],
            )
        if pin_needed:
            refused = self._check_pin(action, posted, request_id, back)
            if refused is not None:
                return refused
        try:
            # the link's round and draft, checked again under the row lock: decided and sent back
            # since this request read the action, the old link must not decide the new round
            self.queue.decide(
                action_id,
                decision,
                actor=posted.reviewer,
                channel="link",
                request_id=request_id,
                expected_hash=action.draft_hash,
                expected_round=checked.e,
                pin_checked=pin_needed,
            )
        except Conflict as exc:
            # someone decided first, or the draft changed between this page's read and the decision
            current = self.queue.review_state(action_id).action
            said = outcome(current, self.pages) if current and current.status is not Status.PENDING else exc.message
            return self.pages.message(
                "Not decided",
                said,
                status_code=409,
                link=back,
                link_text="See the action now",
                notes=["Nothing was changed by you."],
            )
        except Gone as exc:
            return self.pages.message(
                "This approval has expired", exc.message, status_code=410, notes=["Nothing was changed."]
            )
        except (InvalidInput, NotFound) as exc:
            return self.pages.message(
                "Not decided",
                exc.message,
                status_code=exc.status_code,
                link=back,
                notes=["Nothing was changed; go back and correct the form."],
            )
        response = RedirectResponse(back, status_code=303)
        self.remember_reviewer(response, posted.reviewer)
        return response

    def _check_pin(
        self, action: ActionRecord, posted: LinkDecisionForm, request_id: str | None, back: str
    ) -> HTMLResponse | None:
        attempt = self.queue.pin_try(
            action.id, correct=self.queue.pin_matches(posted.pin), actor=posted.reviewer, request_id=request_id
        )
        if attempt.allowed:
            return None
        if attempt.locked:
            return self.pages.message(
                "Approval by link is locked",
                f"Too many wrong PINs ({self.settings.approval_pin_max_tries}): this CRITICAL action can no "
                "longer be approved by link or API token. Nothing was decided.",
                status_code=403,
                link=back,
                notes=[
                    "It can still be rejected with the Review or Reject link. To approve it, use a "
                    f"terminal: opsdesk approvals approve {action.id} (it asks for the PIN)",
                    "The failed tries are in the audit log.",
                ],
            )
        tries = "try" if attempt.remaining == 1 else "tries"
        return self.pages.message(
            "Wrong PIN",
            f"That approval PIN is wrong; nothing was decided. "
            f"{attempt.remaining} {tries} left before approval by link is locked.",
            status_code=403,
            link=back,
            link_text="Try again",
        )

    def _form_invalid(self, action_id: UUID, form: Mapping[str, Any], exc: ValidationError) -> HTMLResponse:
        problems = [f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()]
        token = form.get("t")
        link = self.signer.link(action_id, token) if isinstance(token, str) and token else None
        return self.pages.message(
            "The form is not complete", "Nothing was changed.", status_code=422, link=link, notes=problems
        )
