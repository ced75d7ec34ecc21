"""`opsdesk run`: the HTTP API, the scheduler and the executor in one process (each can run alone)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from app.agent_runs.registry import AgentRegistry
from app.approvals.executor import Executor, default_worker_id
from app.approvals.queue import ApprovalQueue
from app.core.settings import Settings
from app.notifications.sender import NotificationSender
from app.runtime.database import open_database
from app.schedule.scheduler import build_scheduler
from app.web import create_app

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    api: bool = True
    scheduler: bool = True
    executor: bool = True
    workers: int = 1


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its own shutdown, which would kill the process before
    the executor, the scheduler and the embedded database are stopped; we handle the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_config(settings: Settings, app: Any, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn with opsdesk's limits. It closes idle kept-alive connections and caps connections and
    requests at once (more get a 503), but has no timeout for a client that sends its request
    slowly: a public deployment puts a reverse proxy in front that does (README, "Deploying")."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        server_header=False,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        limit_concurrency=settings.http_max_concurrency,
    )


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
            "opsdesk running: api=%s scheduler=%s executor workers=%d database=%s",
            parts.api,
            parts.scheduler,
            len(threads),
            settings.database_mode,
        )
        server = _Server(server_config(settings, create_app(settings, db), host=host, port=port)) if parts.api else None

        def shut_down(*_: object) -> None:
            stop.set()
            if server is not None:
                server.should_exit = True

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, shut_down)
        try:
            if server is not None:
                server.run()
            else:
                stop.wait()
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
