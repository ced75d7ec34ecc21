"""The HTTP API (DESIGN.md's contract). Errors are JSON `{"error": {"code", "message", "request_id"}}`.

`create_app` only assembles: the app's state (what app.web.deps hands the routes), the request-id
and body-size middleware, the error handlers (app.web.errors) and the routers (app.web.routes;
each checks every input before a route reads it, app.web.request_guard).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from app.approvals.batch import DecisionBatch
from app.approvals.pages.base import Pages
from app.approvals.pages.inbox import InboxPages
from app.approvals.pages.review import ReviewPages
from app.approvals.queue import ApprovalQueue
from app.core.database import Database, open_async
from app.core.settings import Settings
from app.web.errors import RequestIdMiddleware, add_error_handlers
from app.web.routes import actions, approvals, health, memory, reports, webhooks

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(settings: Settings, db: Database, *, lifespan: Lifespan | None = None) -> FastAPI:
    """`lifespan`: what the app's server process opens and closes with it (an API worker process's
    own database, app.runtime.service). While the server runs, the app also holds an async pool on
    the same PostgreSQL for the decision endpoint's group commit (`app.state.decisions`, an
    app.approvals.batch.DecisionBatch; none over Supabase's REST API)."""

    @asynccontextmanager
    async def serving(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            adb = await open_async(db)
            if adb is not None:
                stack.push_async_callback(adb.close)
            app.state.decisions = None if adb is None else DecisionBatch(adb)
            # What exists now (modules, the app, its models and pools) lives as long as the server:
            # frozen out of the collector's reach, a full collection no longer walks it each time
            # (a 77 ms pause every few thousand requests before; bench/README.md, issue 15)
            gc.collect()
            gc.freeze()
            stack.callback(gc.unfreeze)
            try:
                yield
            finally:
                app.state.decisions = None

    # /docs loads Swagger UI from a CDN onto the approval pages' origin: only where API_DOCS allows
    app = FastAPI(
        title="opsdesk",
        version="0.1.0",
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        lifespan=serving,
    )
    app.add_middleware(RequestIdMiddleware, max_bytes=settings.max_request_bytes)
    queue = ApprovalQueue(db, settings)
    pages = Pages(settings)
    app.state.settings = settings
    app.state.db = db
    app.state.decisions = None  # until the server starts (see `serving`)
    app.state.queue = queue
    app.state.pages = pages
    app.state.review = ReviewPages(settings, queue, pages)
    app.state.inbox = InboxPages(settings, queue, pages)
    add_error_handlers(app)
    # first: a decision is the hot path, and every router before it is matched against it in vain
    app.include_router(approvals.router)  # /approvals...: Bearer, or a signed link for the pages
    app.include_router(webhooks.router)  # POST /webhooks/hubspot: HubSpot's v3 signature, not a token
    app.include_router(memory.router)  # GET /memory/search (Bearer)
    app.include_router(reports.router)  # GET /reports/daily (Bearer)
    app.include_router(health.router)  # GET /healthz
    app.include_router(actions.router)  # POST /actions (Bearer)
    return app
