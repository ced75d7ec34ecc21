"""The `opsdesk` command line: everything the web does, from a terminal.

`main(argv, agents=...)` is called by the entry point (scheduler.py), which hands in the agents
registry; `build_app` assembles the commands, each in its own module, around it. Every command gets
its settings and database the one way (app.cli.context).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from app.cli.agents import agents_app
from app.cli.approvals import actions_app, approvals_app, executor_app
from app.cli.buffer import buffer_app
from app.cli.config import config_app, db_app
from app.cli.demo import demo_command
from app.cli.memory import memory_app
from app.cli.outside import brevo_app, models_app
from app.cli.report import report_command
from app.cli.run import run_command
from app.cli.schedule import jobs_command

if TYPE_CHECKING:
    from app.agent_runs.registry import AgentRegistry


def build_app(agents: AgentRegistry) -> typer.Typer:
    app = typer.Typer(
        help="opsdesk: AI agents draft, a risk policy sorts, a person approves.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    app.add_typer(config_app, name="config")
    app.add_typer(db_app, name="db")
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(actions_app, name="actions")
    app.add_typer(executor_app, name="executor")
    app.add_typer(models_app, name="models")
    app.add_typer(brevo_app, name="brevo")
    app.add_typer(buffer_app, name="buffer")
    app.add_typer(memory_app, name="memory")
    app.add_typer(agents_app(agents), name="agents")
    app.command("jobs")(jobs_command)
    app.command("report")(report_command)
    app.command("run")(run_command)
    app.command("demo")(demo_command)
    return app


def main(argv: list[str] | None = None, *, agents: AgentRegistry) -> None:
    """Run one command. Whatever goes wrong that the user can act on ends as one message and the
    documented exit code (app.core.errors.describe); only a bug is a traceback."""
    try:
        # without standalone mode click returns an Exit's code instead of exiting
        code = build_app(agents)(args=argv, prog_name="opsdesk", standalone_mode=False, obj=agents)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:
        # imported only when a command failed: the error tree pulls in pydantic (`--help` does not)
        from app.cli.failures import USAGE_ERROR, fail, usage_failed
        from app.core.errors import KNOWN_ERRORS

        if isinstance(exc, KNOWN_ERRORS):
            fail(exc)
        if isinstance(exc, USAGE_ERROR):
            usage_failed(exc)
        raise
    sys.exit(code if isinstance(code, int) else 0)
