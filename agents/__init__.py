"""The marketing, sales and support agents: gather context, ask Claude, propose actions.

`run_agent(name, trigger)` is the one entry point (the schedule's jobs and `opsdesk agents run`
call it). Given only those two, it opens what it needs from the settings; tests and long-lived
callers pass their own database, clients, memory and Claude client.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.framework import Agent, AgentRunReport, Planner
    from app.clients import Clients
    from app.database import Database
    from app.memory import MemoryStore
    from app.settings import Settings

AGENT_NAMES = ("sales", "support", "marketing")


def agent_named(name: str) -> Agent[Any, Any, Any]:
    from agents.marketing import MarketingAgent
    from agents.sales import SalesAgent
    from agents.support import SupportAgent
    from app.errors import InvalidInput

    agents: dict[str, Callable[[], Agent[Any, Any, Any]]] = {
        "sales": SalesAgent,
        "support": SupportAgent,
        "marketing": MarketingAgent,
    }
    if name not in agents:
        raise InvalidInput(f"no agent {name!r}", details={"agents": list(AGENT_NAMES)})
    return agents[name]()


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
    """Run one agent now. A failure of the run itself (an outside system, the model, the budget)
    is recorded in agent_runs and comes back as `outcome="failed"`; nothing of it is submitted.
    `dry_run`: build and tier the actions; write nothing but the run's record."""
    from agents.framework import AgentEnv, run
    from app.approval_queue import ApprovalQueue
    from app.clients import Clients
    from app.database_setup import open_database
    from app.local_secrets import with_local_secrets
    from app.memory import MemoryStore
    from app.settings import Settings

    agent = agent_named(name)
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
                from app.llm_ledger import claude_client

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
