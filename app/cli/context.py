"""The one way a command gets what it needs: the settings, the database, who acts, the consoles,
and the agents registry the entry point handed in (scheduler.py). Every command module imports
these; none imports another command module."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from app.agent_runs.registry import AgentRegistry
from app.core.database import Database
from app.core.errors import InvalidInput
from app.core.local_secrets import with_local_secrets
from app.core.models import ReviewerName
from app.core.settings import Settings
from app.runtime.database import open_database
from integrations.untrusted import validation_errors

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error is never broken mid-command: the terminal wraps it

_REVIEWER: TypeAdapter[str] = TypeAdapter(ReviewerName)


def load_settings() -> Settings:
    """The settings from the environment, `.env` and the data folder's generated secrets; an
    invalid configuration is reported per setting (exit 2), never as a traceback."""
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
    settings = load_settings()
    with open_database(settings, init_schema=init_schema, check_memory=check_memory) as db:
        yield settings, db


def actor(name: str | None) -> str:
    """Who acts, marked as coming from the terminal (as the API marks its callers `api:`): a
    person's name (app.core.models.ReviewerName: one line, not one opsdesk uses for itself)."""
    try:
        return f"cli:{_REVIEWER.validate_python(name or getpass.getuser())}"
    except ValidationError as exc:
        raise InvalidInput(f"--as: {validation_errors(exc)[0]['msg']}") from exc


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


def agents_of(ctx: typer.Context) -> AgentRegistry:
    """The agents registry `app.cli.main` was given (Typer's context object)."""
    registry: AgentRegistry = ctx.find_root().obj
    return registry
