"""The `opsdesk` command line: everything the web does, from a terminal.

`main(argv, agents=...)` is called by the entry point (scheduler.py), which hands in the agents
registry; `build_app` assembles the commands, each in its own module, around it. Every command gets
its settings and database the one way (app.cli.context).
"""

from __future__ import annotations

import sys

import typer

from app.agent_runs.registry import AgentRegistry
from app.cli.agents import agents_app
from app.cli.approvals import actions_app, approvals_app, executor_app
from app.cli.buffer import buffer_app
from app.cli.config import config_app, db_app
from app.cli.context import errors
from app.cli.memory import memory_app
from app.cli.outside import brevo_app, models_app
from app.cli.report import report_command
from app.cli.run import run_command
from app.cli.schedule import jobs_command
from app.core.errors import KNOWN_ERRORS, describe


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
    return app


def main(argv: list[str] | None = None, *, agents: AgentRegistry) -> None:
    try:
        # without standalone mode click returns an Exit's code instead of exiting
        code = build_app(agents)(args=argv, standalone_mode=False, obj=agents)
    except KNOWN_ERRORS as exc:
        info = describe(exc)
        errors.print(f"[red]{info.code}[/red]: {info.message}")
        for key, value in info.details.items():
            errors.print(f"  {key}: {value}")
        sys.exit(info.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
