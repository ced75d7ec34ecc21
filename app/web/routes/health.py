"""`GET /healthz`: the status and each part's state for anyone (a load balancer, a monitor); the
counts and the database's error text only with the API token: they tell an outsider too much."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.core import sql as core_sql
from app.core.errors import DatabaseError
from app.core.settings import Settings, parts
from app.memory.index import memory_health
from app.web.deps import Authorization, DbDep, SettingsDep, check_api_token
from app.web.request_guard import CheckedRoute

router = APIRouter(route_class=CheckedRoute)  # every input checked (app.web.request_guard)


@router.get("/healthz")
def healthz(settings: SettingsDep, db: DbDep, authorization: Authorization = None) -> JSONResponse:
    if authorization is not None:
        check_api_token(settings, authorization)  # a wrong token is refused, not quietly shown less
    body: dict[str, Any] = {"integrations": integrations(settings)}
    detailed = authorization is not None
    try:
        health = core_sql.health(db)
    except DatabaseError as exc:
        database: dict[str, Any] = {"ok": False, "mode": settings.database_mode}
        if detailed:
            database["error"] = exc.message
        body |= {"status": "degraded", "database": database}
        return JSONResponse(body, status_code=503)
    body |= {
        "status": "ok",
        "database": {"ok": True, "mode": settings.database_mode, **(health if detailed else {})},
        "memory": memory_health(db, settings, detailed=detailed),
    }
    return JSONResponse(body)


def integrations(settings: Settings) -> dict[str, str]:
    """Each integration's part (app.core.settings), by whether its key setting is given."""
    return {
        part.part: "configured" if getattr(settings, part.health_setting) is not None else "not_configured"
        for part in parts(type(settings))
        if part.health_setting is not None
    }
