"""`POST /webhooks/hubspot`: HubSpot's CRM events, verified (v3 signature, 5-minute window on the
database clock, no replays) and recorded once each.

Refusals change nothing and answer in the API's error format: a missing or wrong signature and a
timestamp outside the window 401, a replayed delivery 409, a body that is not an array of events
HubSpot could have sent (none of them usable) 400, a body over MAX_BODY_BYTES 413 (found before it
is all read). Each event is read on its own: one that cannot be recorded (a NaN, nesting no event
has, not HubSpot's shape) is set aside with its reason, and the others are recorded (200).
"""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.core.settings import Settings
from app.web.deps import DbDep, SettingsDep
from integrations.errors import InvalidRequest
from integrations.hubspot_webhooks import (
    MAX_AGE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TIMESTAMP_MS,
    delivery_hash,
    parse_delivery,
    signature_matches,
)

log = logging.getLogger(__name__)

HUBSPOT_WEBHOOK_PATH = "/webhooks/hubspot"
# HubSpot sends at most 100 events (~250 bytes each) per request; this leaves room for MAX_EVENTS
# and keeps an unsigned caller from making us buffer the API's whole request limit
MAX_BODY_BYTES = 512 * 1024
router = APIRouter()


def _refuse(request: Request, status: int, code: str, message: str) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    log.warning("HubSpot webhook refused (%s, request %s): %s", code, request_id, message)
    return JSONResponse({"error": {"code": code, "message": message, "request_id": request_id}}, status_code=status)


async def _capped_body(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY_BYTES: read no further than that, whatever the
    Content-Length says (it may be absent, with a chunked body, or lie)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def signed_uri(settings: Settings, request: Request) -> str:
    """The URL HubSpot called, as it signed it: our public address, never the Host header."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{settings.public_base_url}{HUBSPOT_WEBHOOK_PATH}" + (f"?{query}" if query else "")


@router.post(HUBSPOT_WEBHOOK_PATH, summary="HubSpot CRM events (v3 signature)")
async def hubspot_webhook(request: Request, settings: SettingsDep, db: DbDep) -> JSONResponse:
    secret = settings.hubspot_client_secret
    if secret is None:
        return _refuse(request, 503, "not_configured", "HubSpot webhooks are off: HUBSPOT_CLIENT_SECRET is not set")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not signature or not TIMESTAMP_MS.match(timestamp):
        return _refuse(request, 401, "bad_signature", f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    body = await _capped_body(request)
    if body is None:
        return _refuse(request, 413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    if not signature_matches(
        secret.get_secret_value(), request.method, signed_uri(settings, request), body, timestamp, signature
    ):
        return _refuse(request, 401, "bad_signature", "the HubSpot signature does not match")
    try:
        delivery = parse_delivery(body)
    except InvalidRequest as exc:
        return _refuse(request, 400, "malformed_body", exc.message)
    set_aside = [aside.model_dump() for aside in delivery.set_aside]
    outcome = await run_in_threadpool(
        db.call,
        "record_hubspot_webhook",
        delivery_hash=delivery_hash(signature, timestamp),
        signed_at_ms=int(timestamp),
        window_seconds=MAX_AGE_SECONDS,
        events=delivery.events,
        set_aside=set_aside,
    )
    if not outcome["accepted"]:
        if outcome["reason"] == "replay":
            return _refuse(request, 409, "replayed", "this signed delivery was already received")
        return _refuse(
            request,
            401,
            "stale_timestamp",
            f"the request timestamp is more than {MAX_AGE_SECONDS} s from the server's time",
        )
    answer = {"received": outcome["received"], "recorded": outcome["recorded"]}
    if set_aside:
        log.warning(
            "HubSpot webhook: %d event(s) set aside: %s",
            len(set_aside),
            "; ".join(f"#{aside['index']} {aside['reason']}" for aside in set_aside[:5]),
        )
        answer["set_aside"] = [{"index": aside["index"], "reason": aside["reason"]} for aside in set_aside]
    # 200 all the same: HubSpot retries any answer but 2xx and 400/401/403/404/405, and the events
    # set aside would not read any better on a retry
    return JSONResponse(answer)
