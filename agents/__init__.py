"""The marketing, sales and support agents: gather context, ask Claude, propose actions.

`REGISTRY` is the agents as app/ sees them (app.agent_runs.registry.AgentRegistry): scheduler.py,
the composition root, hands it to the CLI and the schedule, which take the `agents run` choices and
the agent jobs from it. A new agent is one class and one entry in `AGENTS`.

`run_agent(name, trigger)` runs one now. Given only those two, it opens what it needs from the
settings; tests and long-lived callers pass their own database, clients, memory and Claude client.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from agents.framework import Agent, AgentEnv, Planner
from agents.marketing import MarketingAgent
from agents.run import run
from agents.sales import SalesAgent
from agents.support import SupportAgent
from app.agent_runs.registry import AgentEntry, AgentUnavailable
from app.agent_runs.report import AgentRunReport
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.clients.claude_ledger import claude_client
from app.core.database import Database
from app.core.local_secrets import with_local_secrets
from app.core.settings import Settings
from app.memory.store import MemoryStore
from app.runtime.database import open_database

AGENTS: tuple[type[Agent[Any, Any, Any]], ...] = (SalesAgent, SupportAgent, MarketingAgent)


class Registry:
    """The agents as app.agent_runs.registry.AgentRegistry: their entries, and a run by name."""

    def __init__(self, agents: tuple[type[Agent[Any, Any, Any]], ...]) -> None:
        self._agents = {agent.name: agent for agent in agents}
        self.entries = tuple(AgentEntry(agent.name, agent.cron_setting) for agent in agents)

    def named(self, name: str) -> Agent[Any, Any, Any]:
        if name not in self._agents:
            raise AgentUnavailable(f"no agent {name!r}", details={"agents": list(self._agents)})
        return self._agents[name]()

    def run(
        self,
        name: str,
        trigger: str,
        *,
        settings: Settings | None = None,
        db: Database | None = None,
        dry_run: bool = False,
        clients: Clients | None = None,
        memory: MemoryStore | None = None,
        planner: Planner | None = None,
    ) -> AgentRunReport:
        """Run one agent now. A failure of the run itself (an outside system, the model, the
        budget) is recorded in agent_runs and comes back as `outcome="failed"`; nothing of it is
        submitted. `dry_run`: build and tier the actions; write nothing but the run's record."""
        agent = self.named(name)
        settings = settings or with_local_secrets(Settings())
        with ExitStack() as stack:
            database = db if db is not None else stack.enter_context(open_database(settings))
            if clients is None:
                clients = Clients(settings, database)
                stack.callback(clients.close)
            if memory is None:
                memory = MemoryStore(database, settings)
                stack.callback(memory.close)
            made: list[Planner] = [planner] if planner is not None else []

            def get_planner() -> Planner:
                if not made:
                    client = claude_client(settings, database)
                    stack.callback(client.close)
                    made.append(client)
                return made[0]

            queue = ApprovalQueue(database, settings)
            env = AgentEnv(
                settings=settings,
                db=database,
                queue=queue,
                clients=clients,
                memory=memory,
                planner=get_planner,
                now=queue.clock(),
                dry_run=dry_run,
            )
            return run(agent, env, trigger=trigger)


REGISTRY = Registry(AGENTS)


def run_agent(
    name: str,
    trigger: str,
    *,
    dry_run: bool = False,
    settings: Settings | None = None,
    db: Database | None = None,
    clients: Clients | None = None,
    memory: MemoryStore | None = None,
    planner: Planner | None = None,
) -> AgentRunReport:
    """`REGISTRY.run`: one agent now, by name."""
    return REGISTRY.run(
        name, trigger, settings=settings, db=db, dry_run=dry_run, clients=clients, memory=memory, planner=planner
    )
