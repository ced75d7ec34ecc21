"""The SQL functions of app/agent_runs: an agent run's record: its start, its sources, its submitted actions, its close.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from app.core.database import Database


def start_agent_run(db: Database, *, agent: str | None, trigger: str | None) -> Any:
    return db.call("start_agent_run", agent=agent, trigger=trigger)


def agent_sources_pick(db: Database, *, agent: str | None, sources: Any, limit: int | None) -> Any:
    return db.call("agent_sources_pick", agent=agent, sources=sources, limit=limit)


def submit_agent_actions(
    db: Database,
    *,
    run_id: UUID | str | None,
    items: Any,
    call_ids: Any,
    actor: str | None,
    request_id: str | None,
    skips: Any,
    refused: Any,
) -> Any:
    return db.call(
        "submit_agent_actions",
        run_id=run_id,
        items=items,
        call_ids=call_ids,
        actor=actor,
        request_id=request_id,
        skips=skips,
        refused=refused,
    )


def close_agent_run(
    db: Database,
    *,
    run_id: UUID | str | None,
    outcome: str | None,
    proposals: int | None,
    call_ids: Any,
    error: str | None,
    skips: Any,
    refused: Any,
) -> Any:
    return db.call(
        "close_agent_run",
        run_id=run_id,
        outcome=outcome,
        proposals=proposals,
        call_ids=call_ids,
        error=error,
        skips=skips,
        refused=refused,
    )
