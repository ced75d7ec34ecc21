"""Group commit for the API's decisions: what arrives while one call is in the database goes in
the next, as one `decide_actions` call and one commit.

A lone decision goes at once (nothing waits for company); under load, the callers that queued
during a call share the next one, so sixteen concurrent deciders cost a few round trips and
commits instead of sixteen of each, on as few database sessions. Each decision is still
`decide_action`'s own in the database (its own subtransaction, answered in its own place), so one
refused decision never fails the others, and the caller gets exactly the answer or the error a
single call would have given.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from app.approvals import sql
from app.core.database import AsyncDatabase, raised_error
from app.core.errors import DatabaseError

# decide_actions' own limit (schema.sql: the subtransaction ids a transaction keeps in memory)
MAX_BATCH = 24


@dataclass
class _Waiting:
    decision: dict[str, Any]
    answer: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class DecisionBatch:
    """One per event loop (an API process), with one call in the database at a time, taking up to
    MAX_BATCH of the decisions that queued meanwhile, oldest first. (Two at a time measured the
    same: the next batch forms while one runs, and a second session only competes for the cores.)"""

    def __init__(self, adb: AsyncDatabase) -> None:
        self.adb = adb
        self._queue: list[_Waiting] = []
        self._sending = False  # a sender runs; set where it starts and ends
        self._tasks: set[asyncio.Task[None]] = set()

    async def decide(
        self, action_id: UUID, *, decision: str, actor: str, reason: str | None, channel: str, request_id: str | None
    ) -> dict[str, Any]:
        """The decided action as `decide_action` answers it; its refusal raised as a single call's."""
        waiting = _Waiting(
            {
                "id": str(action_id),
                "decision": decision,
                "actor": actor,
                "reason": reason,
                "channel": channel,
                "request_id": request_id,
            }
        )
        self._queue.append(waiting)
        if not self._sending:
            # set here and cleared by the sender itself, not by its done callback: that runs a step
            # later, and a decision queued between the sender's last look and that step would wait forever
            self._sending = True
            sender = asyncio.create_task(self._send())
            self._tasks.add(sender)  # held until done: the loop keeps only weak references to tasks
            sender.add_done_callback(self._tasks.discard)
        return await waiting.answer

    async def _send(self) -> None:
        try:
            await self._send_queued()
        finally:
            self._sending = False

    async def _send_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                answers = await sql.decide_actions(self.adb, decisions=[w.decision for w in batch])
                if not isinstance(answers, list) or len(answers) != len(batch):
                    raise DatabaseError(f"decide_actions answered {len(batch)} decisions with {answers!r:.200}")
            except asyncio.CancelledError:
                # the loop stops: these callers and those queued behind them stop with it
                for waiting in [*batch, *self._queue]:
                    waiting.answer.cancel()
                self._queue = []
                raise
            except Exception as exc:  # the call failed as a whole: its transaction decided nothing
                for waiting in batch:
                    if not waiting.answer.done():
                        waiting.answer.set_exception(exc)
                continue
            for waiting, answer in zip(batch, answers, strict=True):
                if waiting.answer.done():  # its caller went away; the decision stands, as a single call's would
                    continue
                error = answer.get("error") if isinstance(answer, dict) else None
                if error is not None:
                    waiting.answer.set_exception(
                        raised_error(
                            "decide_action", error.get("sqlstate"), error.get("message") or "", error.get("detail")
                        )
                    )
                elif isinstance(answer, dict) and isinstance(answer.get("action"), dict):
                    waiting.answer.set_result(answer["action"])
                else:
                    waiting.answer.set_exception(DatabaseError(f"decide_actions answered {answer!r:.200}"))
