"""What the routes depend on, declared once as `Annotated` aliases: the settings, the database,
the queue, the review and inbox pages, memory and reports (all made by create_app and kept on
`app.state`), the request's id, and the API token check.

A route states what it needs in its signature (`settings: SettingsDep`, `dependencies=[ApiAuth]`);
no route is a closure over create_app's locals. The dependencies are `async def`: FastAPI runs a
plain `def` one on a worker thread, a hop per dependency per request (issue 15). Only the memory
store, made on first use, stays on a thread.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from app.approvals.batch import DecisionBatch
from app.approvals.pages.inbox import InboxPages
from app.approvals.pages.review import ReviewPages
from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.errors import Unauthorized
from app.core.settings import Settings
from app.memory.store import MemoryStore
from app.reports.build import DailyReports

_store_lock = threading.Lock()


async def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def queue_of(request: Request) -> ApprovalQueue:
    queue: ApprovalQueue = request.app.state.queue
    return queue


async def review_of(request: Request) -> ReviewPages:
    review: ReviewPages = request.app.state.review
    return review


async def inbox_of(request: Request) -> InboxPages:
    inbox: InboxPages = request.app.state.inbox
    return inbox


def memory_store(request: Request) -> MemoryStore:
    """One store per app, made on first use: it holds the embedder (the local model loads once)."""
    state = request.app.state
    with _store_lock:
        if getattr(state, "memory", None) is None:
            state.memory = MemoryStore(state.db, state.settings)
        store: MemoryStore = state.memory
        return store


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


async def request_id_dep(request: Request) -> str:
    return request_id_of(request)


@dataclass(frozen=True)
class Approvals:
    """What the decision endpoint uses, as one dependency: FastAPI solves every dependency of every
    request anew, and a decision is the API's hot path (issue 15)."""

    settings: Settings
    queue: ApprovalQueue
    review: ReviewPages
    decisions: DecisionBatch | None  # while the server runs (app.web.create_app)
    request_id: str


async def approvals_of(request: Request) -> Approvals:
    state = request.app.state
    return Approvals(state.settings, state.queue, state.review, state.decisions, request_id_of(request))


SettingsDep = Annotated[Settings, Depends(settings_of)]
DbDep = Annotated[Database, Depends(db_of)]
ApprovalsDep = Annotated[Approvals, Depends(approvals_of)]
QueueDep = Annotated[ApprovalQueue, Depends(queue_of)]
ReviewDep = Annotated[ReviewPages, Depends(review_of)]
InboxDep = Annotated[InboxPages, Depends(inbox_of)]
MemoryStoreDep = Annotated[MemoryStore, Depends(memory_store)]
RequestId = Annotated[str, Depends(request_id_dep)]
Authorization = Annotated[str | None, Header()]
LinkToken = Annotated[str, Query(min_length=1, max_length=4000, description="the signed link token")]


async def daily_reports(db: DbDep, settings: SettingsDep) -> DailyReports:
    return DailyReports(db, settings)


ReportsDep = Annotated[DailyReports, Depends(daily_reports)]


def check_api_token(settings: Settings, authorization: str | None) -> None:
    expected = settings.ops_api_token
    if expected is None:
        raise Unauthorized("the API is locked: OPS_API_TOKEN is not configured")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing Bearer token")
    if not hmac.compare_digest(given.strip().encode(), expected.get_secret_value().encode()):
        raise Unauthorized("wrong API token")


async def require_api_token(settings: SettingsDep, authorization: Authorization = None) -> None:
    check_api_token(settings, authorization)


ApiAuth = Depends(require_api_token)
