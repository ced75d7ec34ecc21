"""`opsdesk agents run NAME [--dry-run]`: run one agent now and show what it proposed. The names
are the agents registry's (app.agent_runs.registry), so `--help` and a wrong name list them."""

# No `from __future__ import annotations` here: Typer reads the command's annotations, and the
# choices' enum is made in the factory, where a string annotation could not be resolved.

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.context import console, errors, load_settings
from app.core.log_setup import configure_logging

if TYPE_CHECKING:
    from app.agent_runs.registry import AgentRegistry


def agents_app(agents: "AgentRegistry") -> typer.Typer:
    names = [entry.name for entry in agents.entries]
    needs = {entry.name: entry.needs for entry in agents.entries}
    app = typer.Typer(help=f"Run the {_listed(names)} agents.", no_args_is_help=True)
    AgentName = StrEnum("AgentName", [(name, name) for name in names])  # type: ignore[misc]  # members from the registry

    @app.command("run")
    def agents_run(
        name: Annotated[AgentName, typer.Argument(help="Which agent")],
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Build and tier the actions, submit none")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the run's report as JSON")] = False,
    ) -> None:
        """Run one agent now: it reads HubSpot and memory, asks Claude, and proposes actions."""
        from app.core.config_needs import require

        settings = load_settings()
        # keeps webhook tokens in request URLs out of the log
        configure_logging(settings.log_level, settings.log_format)
        # what the agent cannot run without, said first and alone: no database, no empty table
        require(settings, needs[name.value], command=f"opsdesk agents run {name.value}")
        report = agents.run(name.value, "cli:dry-run" if dry_run else "cli", dry_run=dry_run, settings=settings)
        if as_json:
            console.print_json(report.model_dump_json())
        elif report.outcome == "failed":  # the problem alone: a failed run submitted nothing to list
            errors.print(f"[red]the run failed[/red]: {escape(report.error or '')} (run {report.run_id})")
            raise typer.Exit(1)
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
