"""The API's Bearer token check, shared by create_app's routes and the routers it includes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from app.core.errors import Unauthorized
from app.core.settings import Settings


def check_api_token(settings: Settings, authorization: str | None) -> None:
    expected = settings.ops_api_token
    if expected is None:
        raise Unauthorized("the API is locked: OPS_API_TOKEN is not configured")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing Bearer token")
    if not hmac.compare_digest(given.strip().encode(), expected.get_secret_value().encode()):
        raise Unauthorized("wrong API token")


def require_api_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """For routers: the settings come from the app (`app.state.settings`)."""
    check_api_token(request.app.state.settings, authorization)


ApiAuth = Depends(require_api_token)
