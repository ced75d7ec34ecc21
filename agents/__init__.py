"""The marketing, sales and support agents: gather context, ask Claude, propose actions.

`REGISTRY` is the agents as app/ sees them (app.agent_runs.registry.AgentRegistry): scheduler.py,
the composition root, hands it to the CLI and the schedule, which take the `agents run` choices and
the agent jobs from it. A new agent is one class, listed in `agent_classes` and `ENTRIES`.

The agents' modules (and the stack they use: the queue, the clients, Claude) are imported on the
first run, not with this package: `opsdesk --help` and every command that runs no agent start
without them. tests/test_agents_framework.py checks `ENTRIES` against the classes.

`run_agent(name, trigger)` runs one now. Given only those two, it opens what it needs from the
settings; tests and long-lived callers pass their own database, clients, memory and Claude client.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from app.agent_runs.entry import AgentEntry

if TYPE_CHECKING:
    from agents.framework import Agent, Planner
    from app.agent_runs.report import AgentRunReport
    from app.clients import Clients
    from app.core.database import Database
    from app.core.settings import Settings
    from app.memory.store import MemoryStore

# needs: what each agent drafts from, and Claude (each class's `needs()`; the test below checks them)
ENTRIES = (
    AgentEntry("sales", "sales_agent_cron", ("hubspot", "anthropic")),
    AgentEntry("support", "support_agent_cron", ("hubspot", "anthropic")),
    AgentEntry("marketing", "marketing_agent_cron", ("hubspot", "anthropic")),
)


def agent_classes() -> tuple[type[Agent[Any, Any, Any]], ...]:
    """The agents' classes, in the order of ENTRIES (importing their modules and the stack they use)."""
    from agents.marketing import MarketingAgent
    from agents.sales import SalesAgent
    from agents.support import SupportAgent

    return (SalesAgent, SupportAgent, MarketingAgent)


class Registry:
    """The agents as app.agent_runs.registry.AgentRegistry: their entries, and a run by name."""

    def __init__(self, entries: tuple[AgentEntry, ...]) -> None:
        self.entries = entries

    def named(self, name: str) -> Agent[Any, Any, Any]:
        from app.agent_runs.registry import AgentUnavailable

        agents = {agent.name: agent for agent in agent_classes()}
        if name not in agents or name not in {entry.name for entry in self.entries}:
            raise AgentUnavailable(f"no agent {name!r}", details={"agents": [entry.name for entry in self.entries]})
        return agents[name]()

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
        from agents.framework import AgentEnv
        from agents.run import run
        from app.approvals.queue import ApprovalQueue
        from app.clients import Clients
        from app.clients.claude_ledger import claude_client
        from app.core.local_secrets import with_local_secrets
        from app.core.settings import Settings
        from app.memory.store import MemoryStore
        from app.runtime.database import open_database

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


REGISTRY = Registry(ENTRIES)


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
