"""The agents as app/ sees them: a registry handed in by the entry point (scheduler.py hands it
`agents.REGISTRY`). The CLI's `agents run` choices and the schedule's agent jobs derive from its
entries, so adding an agent touches agents/ and its cron setting only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from app.agent_runs.report import AgentRunReport
from app.core.database import Database
from app.core.errors import InvalidInput
from app.core.settings import Settings


@dataclass(frozen=True)
class AgentEntry:
    name: str  # "sales": the CLI's choice, and the schedule's job `agent_sales`
    cron_setting: str  # the Settings field holding its crontab ("sales_agent_cron")


class AgentUnavailable(InvalidInput):
    """The registry cannot run an agent by that name here."""


class AgentRegistry(Protocol):
    @property
    def entries(self) -> Sequence[AgentEntry]: ...

    def run(
        self, name: str, trigger: str, *, settings: Settings, db: Database | None = None, dry_run: bool = False
    ) -> AgentRunReport:
        """Run one agent now. A failure of the run itself is recorded and comes back as
        `outcome="failed"`; an agent it does not have raises AgentUnavailable. Given a database,
        the run uses it instead of opening its own."""
        ...
