"""One agent as the schedule and the command line name it, without the registry's types (so
`opsdesk --help` lists the agents without importing them, agents/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AgentEntry:
    name: str  # "sales": the CLI's choice, and the schedule's job `agent_sales`
    cron_setting: str  # the Settings field holding its crontab ("sales_agent_cron")
    # the integrations a run cannot start without (`opsdesk config check`'s part names: "hubspot",
    # "anthropic"): the CLI says what of them is missing before it runs anything
    needs: tuple[str, ...] = ()
