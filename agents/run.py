"""One run of an agent: gather -> prompt -> typed plan -> actions -> submit, recorded.

1. `start_agent_run` records the run (agent, trigger, start).
2. The agent lists its sources (a stale deal, a ticket, this week's newsletter); `Source.version`
   names the input, so (ref, version) is "the same input". `agent_sources_pick` drops those that
   need no draft now (an action for the same input in any state, one for an earlier input still
   open, or the same input skipped before) and keeps at most AGENT_MAX_SOURCES, those never
   skipped first: a source the model left out, or whose proposal was refused with nothing in its
   place, is recorded as skipped for that input, so it is not sent again until it changes and
   cannot crowd newer sources out of later prompts.
3. The prompt: the stable system prompt (brand voice, rules, the kinds it may lead to, a worked
   example; cached by the Claude client), then one user message with the reviewers' latest
   feedback (the few latest for each kind of action the agent leads to, so one kind's many edits
   cannot crowd out another's rejections) and the untrusted data fenced (agents.prompt).
4. `ClaudeClient.structured` returns the agent's pydantic plan (one repair try, else the run fails).
5. Each proposal is checked and built by code into ActionRequests: recipients from the CRM record,
   money validated, kind fixed by which part of the plan it came from, and tiered by the policy
   (`ApprovalQueue.prepare`). An address or link in model-written text that no trusted source
   gives (the business's settings and knowledge base; never what customers or CRM users wrote,
   agents.drafting) raises the action to at least MEDIUM, with the reason shown to the reviewer. A
   proposal failing a check is refused (none of its actions is built, unless the refusal keeps the parts
   that can go), listed in the run's report and kept on its agent_runs row, and the agent may
   flag it for a person instead (support does).
6. Everything built is submitted, and the run finished, in ONE transaction
   (`submit_agent_actions`): a failure leaves no action of the run behind. Every action's dedupe
   key is `<agent>/<ref>/<version>/<slot>`, so a repeated run cannot open a second action for the
   same input.
A run that fails (HubSpot down, Claude timing out or overloaded, an answer that does not fit the
schema, the budget spent) is finished as `failed` with its error, having submitted nothing.

A dry run (`AgentEnv.dry_run`) builds and tiers the actions and writes nothing but its agent_runs
row (and the bookkeeping of the outside calls it really makes: the model's spend in llm_calls,
HubSpot's shared rate-limit count): no action, no skip, no memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from agents.drafting import clip
from agents.framework import Agent, AgentEnv, Refused, Source
from agents.prompt import guidance, new_boundary, system_prompt, user_message
from app.agent_runs import sql
from app.agent_runs.report import AgentRunReport, ProposedAction, Refusal
from app.approvals.queue import submit_result
from app.core.errors import KNOWN_ERRORS, InvalidInput
from app.core.models import ActionRequest, FeedbackItem, Tier
from integrations.errors import TransientError
from integrations.untrusted import storable_text, validation_errors

log = logging.getLogger(__name__)

FEEDBACK_PER_KIND = 4
LEFT_OUT = "the model left it out"
ERROR_CHARS = 2000


@dataclass
class _Built:
    source: str
    request: ActionRequest
    params: dict[str, Any]  # ApprovalQueue.prepare's answer: the policy's tier and reasons


@dataclass
class _Draft:
    sources: int = 0
    handled: int = 0
    built: list[_Built] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{ref, version, reason}]: got nothing


# --- the run ----------------------------------------------------------------------------------
def run(agent: Agent[Any, Any, Any], env: AgentEnv, *, trigger: str) -> AgentRunReport:
    started = sql.start_agent_run(env.db, agent=agent.name, trigger=trigger)
    run_id = UUID(str(started["id"]))
    call_ids: list[int] = []
    draft = _Draft()
    try:
        draft = _draft(agent, env, run_id, call_ids)
        refused = [refusal.model_dump() for refusal in draft.refused]
        if env.dry_run or not draft.built:
            row = sql.close_agent_run(
                env.db,
                run_id=run_id,
                outcome="ok",
                proposals=len(draft.built),
                call_ids=call_ids,
                error=None,
                skips=[] if env.dry_run else draft.skipped,
                refused=refused,
            )
            actions = [_proposed(built, None) for built in draft.built]
        else:
            answer = sql.submit_agent_actions(
                env.db,
                run_id=run_id,
                items=[built.params for built in draft.built],
                call_ids=call_ids,
                actor=f"agent:{agent.name}",
                request_id=f"agent-run:{run_id}",
                skips=draft.skipped,
                refused=refused,
            )
            row = answer["run"]
            actions = [_proposed(built, result) for built, result in zip(draft.built, answer["results"], strict=True)]
    except Exception as exc:
        error = clip(
            exc.message if isinstance(exc, KNOWN_ERRORS) else storable_text(f"{type(exc).__name__}: {exc}"), ERROR_CHARS
        )
        row = sql.close_agent_run(
            env.db,
            run_id=run_id,
            outcome="failed",
            proposals=0,
            call_ids=call_ids,
            error=error,
            skips=[],
            refused=[],
        )
        if not isinstance(exc, KNOWN_ERRORS):
            raise  # a bug: recorded, and loud
        log.warning("agent %s run %s failed: %s", agent.name, run_id, error)
        return _report(agent, trigger, env.dry_run, row, draft, []).model_copy(
            update={"retryable": isinstance(exc, TransientError)}
        )
    return _report(agent, trigger, env.dry_run, row, draft, actions)


def _draft(agent: Agent[Any, Any, Any], env: AgentEnv, run_id: UUID, call_ids: list[int]) -> _Draft:
    candidates = {source.ref: source for source in agent.find_sources(env)}
    picked = sql.agent_sources_pick(
        env.db,
        agent=agent.name,
        limit=env.settings.agent_max_sources,
        sources=[
            {
                "ref": s.ref,
                "skipped_as": [s.version, _left_out_version(s, env)],
                "source_prefix": s.prefix(agent.name),
                "input_prefix": s.input_prefix(agent.name),
            }
            for s in candidates.values()
        ],
    )
    fresh = [candidates[ref] for ref in picked["picked"]]
    draft = _Draft(sources=len(fresh), handled=int(picked["handled"]))
    if not fresh:
        return draft
    briefing = agent.brief(env, fresh)
    settings = env.settings
    system = system_prompt(
        agent=agent.name, brand_voice=settings.brand_voice, rules=agent.rules, kinds=agent.kinds, example=agent.example
    )
    message = user_message(
        boundary=new_boundary(),
        today=env.today,
        time_zone=settings.cron_timezone,
        guidance_lines=guidance(_feedback(agent, env)),
        blocks=briefing.blocks,
        task=briefing.task,
    )
    planner = env.planner()
    plan = planner.structured(
        agent.name,
        system,
        [{"role": "user", "content": message}],
        agent.plan_model,
        max_tokens=settings.agent_max_output_tokens,
        call_ids=call_ids,
    )
    model_id = planner.resolve_model().resolved  # the one `structured` just used, kept in the database
    by_ref = {source.ref: source for source in fresh}
    answered: set[str] = set()
    why_nothing: dict[str, str] = {}

    def prepare(source: Source[Any], requests: list[ActionRequest]) -> list[_Built]:
        return [_prepared(agent, env, source, request, run_id, model_id) for request in requests]

    for proposal in plan.proposals:
        source = by_ref.get(proposal.ref)
        if source is None or source.ref in answered:
            why = "a second proposal for it" if source else "not one of this run's sources"
            draft.refused.append(Refusal(ref=clip(str(proposal.ref), 100), reason=why))
            continue
        answered.add(source.ref)
        try:
            draft.built.extend(prepare(source, agent.build(env, source, proposal, briefing)))
        except (Refused, InvalidInput, ValidationError) as exc:
            # one source's proposal that cannot become a valid action costs that source only
            reason = _reason(exc)
            log.info("agent %s: proposal for %s refused: %s", agent.name, source.ref, reason)
            draft.refused.append(Refusal(ref=source.ref, reason=reason))
            why_nothing[source.ref] = reason
            kept = exc.keep if isinstance(exc, Refused) else []
            draft.built.extend(prepare(source, [*kept, *agent.when_refused(env, source, reason)]))
    for source in fresh:
        if source.ref not in answered:
            why_nothing[source.ref] = LEFT_OUT
            draft.built.extend(prepare(source, agent.when_left_out(env, source)))
    acted_on = {built.source for built in draft.built}
    # A refusal holds until the source changes (its version). Left out holds for the day only: a
    # long prompt may crowd a source out, and a new contact (one version, ever) would otherwise
    # never get its first email; it comes back tomorrow, behind sources never skipped.
    draft.skipped = [
        {
            "ref": source.ref,
            "version": _left_out_version(source, env) if why_nothing.get(source.ref) == LEFT_OUT else source.version,
            "reason": why_nothing.get(source.ref, "its proposal led to no action"),
        }
        for source in fresh
        if source.ref not in acted_on
    ]
    return draft


def _left_out_version(source: Source[Any], env: AgentEnv) -> str:
    """What a source the model left out is skipped as: this version, today only."""
    return f"{source.version}/left-out-{env.today.isoformat()}"


def _feedback(agent: Agent[Any, Any, Any], env: AgentEnv) -> list[FeedbackItem]:
    """The latest few rejections and edits for each kind the agent leads to, newest first."""
    items = [
        item for kind in agent.kinds for item in env.queue.recent_feedback(agent.name, kind, limit=FEEDBACK_PER_KIND)
    ]
    return sorted(items, key=lambda item: item.decided_at or datetime.min.replace(tzinfo=UTC), reverse=True)


def _prepared(
    agent: Agent[Any, Any, Any],
    env: AgentEnv,
    source: Source[Any],
    request: ActionRequest,
    run_id: UUID,
    model_id: str | None,
) -> _Built:
    """The last line of defence, in code: only the agent's own kinds, only keyed to this source."""
    if request.kind not in agent.kinds or request.agent != agent.name:
        raise RuntimeError(f"{agent.name} built a {request.kind} action as {request.agent!r}: not allowed")
    if not (request.dedupe_key or "").startswith(source.input_prefix(agent.name)):
        raise RuntimeError(f"{agent.name} built an action not keyed to {source.ref}")
    metadata = request.metadata.model_copy(update={"model_id": model_id, "agent_run": str(run_id)})
    request = request.model_copy(update={"metadata": metadata})
    return _Built(source.ref, request, env.queue.prepare(request))


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        exc = InvalidInput("an action it led to does not fit its kind", details={"errors": validation_errors(exc)})
    if isinstance(exc, InvalidInput):
        errors = exc.details.get("errors") or []
        first = errors[0] if errors else None
        where = ".".join(str(part) for part in first.get("loc", ())) if isinstance(first, dict) else ""
        return clip(f"{exc.message}" + (f" ({where}: {first.get('msg')})" if first else ""), 500)
    return clip(str(exc), 500)


def _proposed(built: _Built, result: Mapping[str, Any] | None) -> ProposedAction:
    impact = built.params["action"]["impact"]
    submitted = submit_result(result) if result is not None else None
    return ProposedAction(
        source=built.source,
        kind=built.request.kind,
        summary=built.request.summary,
        tier=submitted.risk_tier if submitted else Tier(built.params["risk_level"]),
        recipients=impact["recipients"],
        cost_usd=Decimal(str(impact["cost_usd"])),
        status=submitted.status if submitted else None,
        action_id=submitted.id if submitted else None,
        duplicate=submitted.duplicate if submitted else False,
    )


def _report(
    agent: Agent[Any, Any, Any],
    trigger: str,
    dry_run: bool,
    row: Mapping[str, Any],
    draft: _Draft,
    actions: list[ProposedAction],
) -> AgentRunReport:
    return AgentRunReport(
        run_id=row["id"],
        agent=agent.name,
        trigger=trigger,
        dry_run=dry_run,
        outcome=row["outcome"],
        error=row.get("error"),
        sources=draft.sources,
        already_handled=draft.handled,
        actions=actions,
        refused=draft.refused,
        tokens=int(row["tokens"]),
        cost_usd=Decimal(str(row["cost_usd"])),
    )
