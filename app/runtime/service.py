"""`opsdesk run`: the HTTP API, the scheduler and the executor in one process (each can run alone).

With `api_workers` > 1 the HTTP API runs in that many processes instead (uvicorn's supervisor: one
socket bound here, each spawned process serving it with its own connection pool, a dead one
replaced); the scheduler and the executor stay in this process. Every decision is one SQL function
under a row lock, so any number of API processes decide each action once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from app.agent_runs.registry import AgentRegistry
from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.leases import default_worker_id
from app.core.log_setup import configure_logging
from app.core.settings import Settings
from app.notifications.sender import NotificationSender
from app.runtime.advert import advertise, withdraw
from app.runtime.database import open_database
from app.schedule.scheduler import build_scheduler
from app.web import create_app

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    api: bool = True
    scheduler: bool = True
    executor: bool = True
    workers: int = 1  # executor threads
    api_workers: int = 1  # HTTP API processes


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its own shutdown, which would kill the process before
    the executor, the scheduler and the embedded database are stopped; we handle the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_config(settings: Settings, app: Any, *, host: str, port: int, workers: int = 1) -> uvicorn.Config:
    """uvicorn with opsdesk's limits. It closes idle kept-alive connections and caps connections and
    requests at once (more get a 503), but has no timeout for a client that sends its request
    slowly: a public deployment puts a reverse proxy in front that does (README, "Deploying").
    With several workers `app` is an `ApiWorkerApp`, called in each worker process."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through opsdesk's handler: its format (JSON too), its filters
        server_header=False,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        limit_concurrency=settings.http_max_concurrency,
        workers=workers,
        factory=workers > 1,
        # a spawned worker imports the whole app before it can answer the supervisor's pings: on a
        # busy machine that takes longer than uvicorn's 5 s, and it would be killed and respawned
        timeout_worker_healthcheck=60,
    )


class ApiWorkerApp:
    """The HTTP API of one worker process. uvicorn pickles it (with the settings the service was
    started with) into each spawned process and calls it there: the process opens its own database
    pool (the embedded server is joined, not started again) and closes it when it stops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self) -> FastAPI:
        configure_logging(self.settings.log_level)  # a spawned process starts with none of ours
        resources = ExitStack()
        db = resources.enter_context(open_database(self.settings))

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            try:
                yield
            finally:
                resources.close()

        return create_app(self.settings, db, lifespan=lifespan)


def run_service(settings: Settings, parts: Parts, *, host: str, port: int, agents: AgentRegistry) -> None:
    with open_database(settings) as db:
        stop = threading.Event()
        if settings.anthropic_api_key is not None:
            from app.clients.claude_ledger import check_model_at_startup

            # in the background: a slow models list must not hold up the start
            threading.Thread(
                target=check_model_at_startup, args=(settings, db), name="model-check", daemon=True
            ).start()
        executors = [
            Executor(db, settings, worker_id=f"{default_worker_id()}:w{n}")
            for n in range(parts.workers if parts.executor else 0)
        ]
        threads = [
            threading.Thread(target=executor.run_forever, args=(stop,), name=f"executor-{n}", daemon=True)
            for n, executor in enumerate(executors)
        ]
        for thread in threads:
            thread.start()
        # Discord notifications are scheduler jobs; without a webhook the outbox keeps its rows for later
        notifications = (
            NotificationSender(db, settings) if parts.scheduler and settings.discord_webhook_url is not None else None
        )
        schedule = (
            build_scheduler(ApprovalQueue(db, settings), notifications, agents=agents) if parts.scheduler else None
        )
        if schedule is not None:
            schedule.start()
        log.info(
            "opsdesk running: api=%s (%d process(es)) scheduler=%s executor workers=%d database=%s",
            parts.api,
            parts.api_workers if parts.api else 0,
            parts.scheduler,
            len(threads),
            settings.database_mode,
        )
        try:
            serve(settings, db, parts, stop, host=host, port=port)
        finally:
            stop.set()
            if schedule is not None:
                schedule.shutdown(wait=False)
            for thread in threads:
                thread.join(timeout=settings.webhook_post_timeout_seconds + 5)
            for executor in executors:
                executor.close()
            if notifications is not None:
                notifications.close()


def serve(settings: Settings, db: Database, parts: Parts, stop: threading.Event, *, host: str, port: int) -> None:
    """The HTTP API until SIGTERM or SIGINT (without it: until then, for the other parts), with
    its address in the data folder meanwhile for the CLI to ask (app.runtime.advert)."""
    try:
        advert = advertise(settings, host=host, port=port) if parts.api else None
    except OSError as exc:  # a read-only data folder: the CLI then opens the database itself
        log.warning("could not write the service file for the CLI: %s", exc)
        advert = None
    try:
        serve_api(settings, db, parts, stop, host=host, port=port)
    finally:
        if advert is not None:
            withdraw(advert)


def serve_api(settings: Settings, db: Database, parts: Parts, stop: threading.Event, *, host: str, port: int) -> None:
    if parts.api and parts.api_workers > 1:
        config = server_config(settings, ApiWorkerApp(settings), host=host, port=port, workers=parts.api_workers)
        sock = config.bind_socket()
        try:
            Multiprocess(config, sockets=[sock]).run()  # stops its processes on SIGTERM/SIGINT, then returns
        finally:
            sock.close()
        return
    server = _Server(server_config(settings, create_app(settings, db), host=host, port=port)) if parts.api else None

    def shut_down(*_: object) -> None:
        stop.set()
        if server is not None:
            server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, shut_down)
    if server is not None:
        server.run()
    else:
        stop.wait()
