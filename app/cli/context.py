"""The one way a command gets what it needs: the settings, the database, who acts, the consoles,
and the agents registry the entry point handed in (scheduler.py). Every command module imports
these; none imports another command module.

What a command needs is imported when it runs (settings, the database, the models), never when
the command line is built: `opsdesk --help` stays quick (tests/test_cli_speed.py)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from app.agent_runs.registry import AgentRegistry
    from app.core.database import Database
    from app.core.settings import Settings

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error is never broken mid-command: the terminal wraps it


def load_settings() -> Settings:
    """The settings from the environment, `.env` and the data folder's generated secrets; an
    invalid configuration is reported per setting (exit 2), never as a traceback."""
    from pydantic import ValidationError

    from app.core.local_secrets import with_local_secrets
    from app.core.settings import Settings

    try:
        return with_local_secrets(Settings())
    except ValidationError as exc:
        errors.print("[red]The configuration is not valid[/red] (run `opsdesk config check` for the report):")
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            errors.print(f"  {where}: {error['msg']}")
        raise typer.Exit(2) from None


@contextmanager
def database(*, init_schema: bool = False, check_memory: bool = True) -> Iterator[tuple[Settings, Database]]:
    """The settings and the configured database, open (and checked) for the block."""
    from app.runtime.database import open_database

    settings = load_settings()
    with open_database(settings, init_schema=init_schema, check_memory=check_memory) as db:
        yield settings, db


def actor(name: str | None) -> str:
    """Who acts, marked as coming from the terminal (as the API marks its callers `api:`): a
    person's name (app.core.models.ReviewerName: one line, not one opsdesk uses for itself)."""
    from pydantic import TypeAdapter, ValidationError

    from app.core.errors import InvalidInput
    from app.core.models import ReviewerName
    from integrations.untrusted import validation_errors

    try:
        return f"cli:{TypeAdapter(ReviewerName).validate_python(name or getpass.getuser())}"
    except ValidationError as exc:
        raise InvalidInput(f"--as: {validation_errors(exc)[0]['msg']}") from exc


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


def agents_of(ctx: typer.Context) -> AgentRegistry:
    """The agents registry `app.cli.main` was given (Typer's context object)."""
    registry: AgentRegistry = ctx.find_root().obj
    return registry
