"""`opsdesk agents run NAME [--dry-run]`: run one agent now and show what it proposed. The names
are the agents registry's (app.agent_runs.registry), so `--help` and a wrong name list them."""

# No `from __future__ import annotations` here: Typer reads the command's annotations, and the
# choices' enum is made in the factory, where a string annotation could not be resolved.

from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app.agent_runs.registry import AgentRegistry
from app.cli.context import console, errors
from app.core.local_secrets import with_local_secrets
from app.core.log_setup import configure_logging
from app.core.settings import Settings


def agents_app(agents: AgentRegistry) -> typer.Typer:
    names = [entry.name for entry in agents.entries]
    app = typer.Typer(help=f"Run the {_listed(names)} agents.", no_args_is_help=True)
    AgentName = StrEnum("AgentName", [(name, name) for name in names])  # type: ignore[misc]  # members from the registry

    @app.command("run")
    def agents_run(
        name: Annotated[AgentName, typer.Argument(help="Which agent")],
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Build and tier the actions, submit none")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the run's report as JSON")] = False,
    ) -> None:
        """Run one agent now: it reads HubSpot and memory, asks Claude, and proposes actions."""
        settings = with_local_secrets(Settings())
        configure_logging(settings.log_level)  # keeps webhook tokens in request URLs out of the log
        report = agents.run(name.value, "cli:dry-run" if dry_run else "cli", dry_run=dry_run, settings=settings)
        if as_json:
            console.print_json(report.model_dump_json())
        else:
            table = Table(
                title=f"{report.agent}: {len(report.actions)} action(s)"
                + (" built, none submitted (dry run)" if report.dry_run else " proposed")
            )
            for column in ("source", "kind", "tier", "status", "recipients", "money", "summary"):
                table.add_column(column)
            for action in report.actions:
                status = "dry run" if action.status is None else action.status.value
                table.add_row(
                    action.source,
                    action.kind,
                    action.tier.value,
                    f"{status} (already open)" if action.duplicate else status,
                    f"{action.recipients:,}",
                    f"${action.cost_usd:,.2f}",
                    escape(action.summary[:80]),
                )
            console.print(table)
            for refusal in report.refused:
                console.print(f"[yellow]refused[/yellow] {escape(refusal.ref)}: {escape(refusal.reason)}")
            console.print(
                f"{report.sources} source(s) drafted for, {report.already_handled} already handled; "
                f"{report.tokens:,} tokens, ${report.cost_usd:.4f}; run {report.run_id}"
            )
        if report.outcome == "failed":
            errors.print(f"[red]the run failed[/red]: {escape(report.error or '')}")
            raise typer.Exit(1)

    return app


def _listed(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
