"""`opsdesk run`: the service (HTTP API + scheduler + executor in one process)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.context import agents_of, load_settings
from app.core.log_setup import configure_logging


def run_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (OPSDESK_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (OPSDESK_PORT)")] = None,
    api: Annotated[bool, typer.Option("--api/--no-api", help="Serve the HTTP API")] = True,
    scheduler: Annotated[bool, typer.Option("--scheduler/--no-scheduler", help="Run the schedule")] = True,
    executor: Annotated[bool, typer.Option("--executor/--no-executor", help="Run the executor")] = True,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Executor threads")] = 1,
) -> None:
    """Run the service: HTTP API + scheduler + executor in one process."""
    from app.runtime.service import Parts, run_service  # FastAPI and uvicorn: only for `run`

    settings = load_settings()
    configure_logging(settings.log_level)
    if not (api or scheduler or executor):
        raise typer.BadParameter("nothing to run: enable at least one of --api, --scheduler, --executor")
    run_service(
        settings,
        Parts(api=api, scheduler=scheduler, executor=executor, workers=workers),
        host=host or settings.opsdesk_host,
        port=port or settings.opsdesk_port,
        agents=agents_of(ctx),
    )
