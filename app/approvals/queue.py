"""The approval queue: submit an action (policy decides its tier), decide it, list, expire.

Every state change is one SQL function; this module validates at the edge and calls them.
"""

from __future__ import annotations

import builtins
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from app.approvals import sql
from app.approvals.batch import DecisionBatch
from app.approvals.risk_policy import Assessment, RiskThresholds, assess, reassess
from app.core import sql as core_sql
from app.core.database import Database
from app.core.errors import Forbidden, InvalidInput, NotFound
from app.core.models import (
    ActionPage,
    ActionRecord,
    ActionRequest,
    Channel,
    DecisionRequest,
    FeedbackItem,
    Impact,
    PinTry,
    ReviewState,
    Status,
    SubmitResult,
    Tier,
)
from app.core.settings import Settings
from app.kinds.base import ActionKind
from app.kinds.registry import kind_registry, lookup
from integrations.untrusted import first_problem

log = logging.getLogger(__name__)


def round_of(expires_at: datetime | None) -> int:
    """Which pending round of an action this is: its expiry in whole seconds, as links carry it.
    An action sent back to pending gets a new expiry, so a new round."""
    return int(expires_at.timestamp()) if expires_at else 0


@dataclass(frozen=True)
class Edit:
    modifications: dict[str, Any]  # field -> its edited value, checked against the whole draft
    impact: Impact  # the facts the edited draft gives
    assessment: Assessment  # the policy on them, with today's thresholds


def submit_result(row: Mapping[str, Any]) -> SubmitResult:
    """What `submit_action` answered, as the caller sees it."""
    return SubmitResult(
        id=row["id"],
        status=row["status"],
        risk_tier=row["risk_level"],
        reasons=row["risk_reasons"],
        duplicate=row.get("duplicate", False),
    )


class ApprovalQueue:
    def __init__(self, db: Database, settings: Settings, kinds: Mapping[str, ActionKind] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.kinds = kinds if kinds is not None else kind_registry()
        self.thresholds = RiskThresholds.from_settings(settings)

    def prepare(self, request: ActionRequest) -> dict[str, Any]:
        """The request checked and tiered by the policy: the parameters of `submit_action` (all but
        actor and request id). Preparing a whole batch first lets a caller submit all or none."""
        kind = lookup(self.kinds, request.kind)
        payload = kind.validate_payload(request.payload)
        impact = kind.enforce(kind.impact_for(payload, request.impact))
        assessment = assess(impact, self.thresholds, request.suggested_tier, request.flags)
        metadata = request.metadata.model_dump(mode="json", exclude_none=True)
        if request.suggested_tier is not None:
            metadata["suggested_tier"] = request.suggested_tier.value
        action = {
            "agent": request.agent,
            "kind": request.kind,
            "task_type": request.task_type or metadata.get("task_type"),
            "summary": request.summary,
            "reasoning": request.reasoning,
            "payload": payload,
            "impact": impact.model_dump(mode="json"),
            "metadata": metadata,
            "dedupe_key": request.dedupe_key,
        }
        # refused here, naming the field, rather than by the database (a 503 for the API, and a
        # failed transaction for every other source of an agent run)
        problem = first_problem(action)
        if problem is not None:
            raise InvalidInput(
                f"{problem.where} {problem.what}",
                details={"errors": [{"loc": problem.loc, "msg": problem.what, "type": "unstorable"}]},
            )
        return {
            "action": action,
            "risk_level": assessment.tier.value,
            "risk_reasons": [reason.model_dump(mode="json") for reason in assessment.reasons],
            "auto_run": assessment.tier is Tier.LOW and self.settings.auto_run_low,
            "ttl_seconds": self.settings.approval_ttl_hours(assessment.tier.value) * 3600,
            "max_attempts": self.settings.executor_max_attempts,
        }

    def submit(self, request: ActionRequest, *, actor: str, request_id: str | None = None) -> SubmitResult:
        row = sql.submit_action(self.db, **self.prepare(request), actor=actor, request_id=request_id)
        result = submit_result(row)
        if not result.duplicate:
            log.info("action %s submitted by %s: %s, %s", result.id, actor, result.risk_tier.value, result.status.value)
        return result

    def decide(
        self,
        action_id: UUID,
        request: DecisionRequest,
        *,
        actor: str,
        channel: Channel,
        request_id: str | None = None,
        expected_hash: str | None = None,
        expected_round: int | None = None,
        pin_checked: bool = False,
    ) -> ActionRecord:
        """`actor` is who decides, as the channel vouches for it (a link's reviewer, `api:<name>`,
        `cli:<name>`); `channel` is that channel, recorded apart from the name. `expected_round`
        binds the decision to the pending round the decider saw (`round_of` its expiry), atomically
        in `decide_action`.

        An edit is tiered again on the edited draft (`edit`): its facts and tier are stored with
        it, and one the PIN now guards (edited into CRITICAL) is refused unless the caller checked
        the approval PIN (`pin_checked`), as it must for any approval `pin_required_after` names."""
        current: ActionRecord | None = None
        modifications = None
        retier: dict[str, Any] = {}
        if request.decision == "modify":
            current = ActionRecord.model_validate(self.get(action_id))
            edit = self.edit(current, request.modifications or {})
            modifications = edit.modifications
            retier = {
                "risk_level": edit.assessment.tier.value,
                "risk_reasons": [reason.model_dump(mode="json") for reason in edit.assessment.reasons],
                "estimated_impact": edit.impact.model_dump(mode="json"),
            }
            # bind the edit to the draft it was validated against
            expected_hash = expected_hash or current.draft_hash
        if not pin_checked and request.decision != "reject" and self.settings.approval_pin is not None:
            current = current or ActionRecord.model_validate(self.get(action_id))
            # a round other than the one the caller read is refused below (409) whatever its tier
            same_round = expected_round is None or expected_round == round_of(current.expires_at)
            if current.status is Status.PENDING and same_round and self.pin_required_after(current, request):
                raise Forbidden(
                    "approving this needs the approval PIN (it is, or the edit makes it, CRITICAL); nothing was decided"
                )
        row = sql.decide_action(
            self.db,
            id=action_id,
            decision=request.decision,
            actor=actor,
            reason=request.reason,
            modifications=modifications,
            expected_hash=expected_hash,
            request_id=request_id,
            expected_round=expected_round,
            channel=channel,
            **retier,
        )
        record = ActionRecord.model_validate(row)
        log.info("action %s %s by %s via %s", action_id, record.decision or record.status.value, actor, channel)
        return record

    def decides_in_one_call(self, request: DecisionRequest) -> bool:
        """Whether `decide_action` alone decides `request`: a rejection, or an approval where no
        PIN is set (an edit is read and tiered first; a PIN's tier is read first)."""
        return request.decision == "reject" or (request.decision == "approve" and self.settings.approval_pin is None)

    async def decide_now(
        self,
        batch: DecisionBatch,
        action_id: UUID,
        request: DecisionRequest,
        *,
        actor: str,
        channel: Channel,
        request_id: str | None = None,
    ) -> ActionRecord:
        """`decide_with_pin` for a decision that `decides_in_one_call`, on an event loop's pool (the
        API's), grouped with the decisions that arrive meanwhile (app.approvals.batch): no worker
        thread, and a round trip and a commit shared under load. Anything else is refused here."""
        if not self.decides_in_one_call(request):
            raise ValueError(f"a {request.decision} here needs decide_with_pin")
        row = await batch.decide(
            action_id,
            decision=request.decision,
            actor=actor,
            reason=request.reason,
            channel=channel,
            request_id=request_id,
        )
        return ActionRecord.model_validate(row)

    def decide_with_pin(
        self,
        action_id: UUID,
        request: DecisionRequest,
        *,
        actor: str,
        channel: Channel,
        pin: str | None,
        request_id: str | None = None,
        terminal: bool = False,
    ) -> ActionRecord:
        """A decision from the API token or the terminal: approving a CRITICAL action (or editing
        one into CRITICAL) needs the approval PIN when one is set, counted against the same limit as
        the review page.

        The terminal (`terminal=True`) is where a link locked by wrong PINs can still be approved,
        as the review page tells: its user holds the database credentials, so a lock would protect
        nothing there. A wrong PIN is still refused, counted and audited.

        Where no PIN can be asked for (none is set, or the decision is a rejection) the decision is
        one call: `decide_action` checks the status, expiry and draft under the row lock itself, so
        reading the action first would only cost a round trip."""
        if self.settings.approval_pin is None or request.decision == "reject":
            return self.decide(
                action_id, request, actor=actor, channel=channel, request_id=request_id, pin_checked=True
            )
        current = ActionRecord.model_validate(self.get(action_id))
        if current.status is Status.PENDING and self.pin_required_after(current, request):
            if terminal:
                if not self.pin_matches(pin):
                    self.pin_try(action_id, correct=False, actor=actor, request_id=request_id)
                    raise Forbidden("wrong or missing approval PIN: CRITICAL actions need it; nothing was decided")
            else:
                attempt = self.pin_try(action_id, correct=self.pin_matches(pin), actor=actor, request_id=request_id)
                if not attempt.allowed:
                    raise Forbidden(
                        "approval is locked after too many wrong PINs; nothing was decided"
                        if attempt.locked
                        else f"wrong or missing approval PIN: CRITICAL actions need it; nothing was decided "
                        f"({attempt.remaining} tries left)",
                        details={"locked": attempt.locked, "remaining": attempt.remaining},
                    )
        # bound to the round whose tier was just checked: reopened since (as CRITICAL, say), it is refused
        return self.decide(
            action_id,
            request,
            actor=actor,
            channel=channel,
            request_id=request_id,
            expected_round=round_of(current.expires_at),
            pin_checked=True,
        )

    def edit(self, action: ActionRecord, edits: dict[str, Any]) -> Edit:
        """An edit of `action`'s draft, checked and tiered again: only its kind's editable fields,
        the whole edited draft valid, nothing its kind refuses (text disagreeing with the facts),
        and the facts and tier the policy gives the edited draft with today's thresholds."""
        if not edits:
            raise InvalidInput("modify needs the edited fields")
        kind = lookup(self.kinds, action.kind)
        not_editable = sorted(set(edits) - kind.editable)
        if not_editable:
            raise InvalidInput(
                f"{kind.name} does not allow editing {', '.join(not_editable)}",
                details={"editable": sorted(kind.editable)},
            )
        merged = kind.validate_payload({**action.requested_action, **edits})
        kind.check_edit(action.requested_action, merged)
        assessed = reassess(kind, merged, action.model_dump(mode="json"), self.thresholds)
        return Edit({field: merged[field] for field in edits}, assessed.impact, assessed.assessment)

    def pin_may_follow_an_edit(self, action: ActionRecord) -> bool:
        """Whether an edit of `action` could need the PIN when approving it as it stands does not:
        the policy, run again on the draft with today's thresholds, already says CRITICAL (an edit is
        tiered again that way). No built-in kind lets an edit change a fact: emails' recipients are
        not editable, and a task's text cannot be given money (hubspot_actions.no_money_added)."""
        if self.settings.approval_pin is None or self.pin_required(action):
            return False
        kind = lookup(self.kinds, action.kind)
        return (
            reassess(kind, action.requested_action, action.model_dump(mode="json"), self.thresholds).assessment.tier
            is Tier.CRITICAL
        )

    def pin_required_after(self, action: ActionRecord, request: DecisionRequest) -> bool:
        """Whether `request` approves something the PIN guards: the action as it is, or as the
        request edits it (an edit into CRITICAL asks for the PIN as approving a CRITICAL one does)."""
        if request.decision == "reject" or self.settings.approval_pin is None:
            return False
        if self.pin_required(action):
            return True
        return request.decision == "modify" and self.edit(action, request.modifications or {}).assessment.tier is (
            Tier.CRITICAL
        )

    def get(self, action_id: UUID) -> dict[str, Any]:
        action = sql.get_action(self.db, id=action_id)
        if action is None:
            raise NotFound(f"no action {action_id}")
        return action

    def list(
        self,
        *,
        status: Status | None = None,
        tier: Tier | None = None,
        agent: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> ActionPage:
        page = sql.list_actions(
            self.db,
            status=status.value if status else None,
            risk_level=tier.value if tier else None,
            agent=agent,
            limit=limit,
            offset=offset,
        )
        return ActionPage.model_validate(page)

    def clock(self) -> datetime:
        """The database's time: links expire on it, as the actions they belong to do."""
        return datetime.fromisoformat(core_sql.health(self.db)["now"])

    def review_state(self, action_id: UUID) -> ReviewState:
        return ReviewState.model_validate(sql.approval_review(self.db, id=action_id))

    def pin_required(self, action: ActionRecord) -> bool:
        """DESIGN.md: approving a CRITICAL action requires the approval PIN, if one is set."""
        return self.settings.approval_pin is not None and action.risk_level is Tier.CRITICAL

    def pin_matches(self, pin: str | None) -> bool:
        expected = self.settings.approval_pin
        assert expected is not None
        return hmac.compare_digest((pin or "").strip().encode(), expected.get_secret_value().strip().encode())

    def pin_try(self, action_id: UUID, *, correct: bool, actor: str, request_id: str | None = None) -> PinTry:
        """Count one approval-PIN entry (the caller compared it); says whether to go ahead."""
        return PinTry.model_validate(
            sql.approval_pin_try(
                self.db,
                id=action_id,
                correct=correct,
                max_tries=self.settings.approval_pin_max_tries,
                actor=actor,
                request_id=request_id,
            )
        )

    def recent_feedback(self, agent: str, kind: str | None = None, *, limit: int = 20) -> builtins.list[FeedbackItem]:
        """The latest rejection reasons, edits and notes on this agent's drafts, newest first."""
        rows = sql.recent_feedback(self.db, agent=agent, kind=kind, limit=limit)
        return [FeedbackItem.model_validate(row) for row in rows]

    def expire_due(self, *, limit: int = 500) -> builtins.list[str]:
        return [str(action_id) for action_id in sql.expire_pending(self.db, actor="expiry", limit=limit)["expired"]]

    def cancel(self, action_id: UUID, *, actor: str, reason: str, request_id: str | None = None) -> ActionRecord:
        row = sql.cancel_action(self.db, id=action_id, actor=actor, reason=reason, request_id=request_id)
        return ActionRecord.model_validate(row)

    def settle(
        self, action_id: UUID, outcome: str, *, actor: str, reason: str, request_id: str | None = None
    ) -> ActionRecord:
        row = sql.settle_action(
            self.db, id=action_id, outcome=outcome, actor=actor, reason=reason, request_id=request_id
        )
        return ActionRecord.model_validate(row)
