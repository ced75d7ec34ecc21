"""`opsdesk config check` and `opsdesk db init`."""

from __future__ import annotations

import typer
from rich.table import Table

from app.cli.context import console, database, errors
from app.core.config_check import check

config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)

_STATE_STYLE = {"ok": "green", "not configured": "dim", "incomplete": "yellow", "malformed": "red"}
_ROW_STYLE = {"missing": "yellow", "malformed": "red", "generated": "cyan", "set": "green", "warning": "yellow"}


@config_app.command("check")
def config_check() -> None:
    """Per integration: what is configured, missing or malformed. Never prints a secret."""
    report = check()
    for part in report.parts:
        table = Table(
            title=f"{part.name}: [{_STATE_STYLE[part.state]}]{part.state}[/]",
            title_justify="left",
            show_header=False,
            box=None,
            padding=(0, 2),
        )
        for row in part.rows:
            table.add_row(row.setting, f"[{_ROW_STYLE.get(row.state, 'white')}]{row.state}[/]", row.note)
        console.print(table)
        console.print()
    if not report.ok:
        errors.print("[red]configuration check failed[/red]")
        raise typer.Exit(1)
    console.print("[green]configuration ok[/green]")


@db_app.command("init")
def db_init() -> None:
    """Apply schema.sql (idempotent) to the configured database."""
    with database(init_schema=True) as (settings, _):
        console.print(f"[green]schema applied[/green] ({settings.database_mode})")
