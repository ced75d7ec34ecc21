"""Inbound HubSpot webhooks: the v3 signature and the shape of the events.

v3 signs `method + URI + raw body + timestamp` with HMAC-SHA256 keyed by the app's client secret,
base64-encoded, in `X-HubSpot-Signature-v3`; `X-HubSpot-Request-Timestamp` is in milliseconds and
HubSpot's own check refuses it after 5 minutes. The URI is the one HubSpot called, so it is built
from PUBLIC_BASE_URL (never from the Host header, which a caller chooses).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from app.errors import InvalidInput

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE_SECONDS = 300
MAX_EVENTS = 1000  # HubSpot batches up to 100 events per request; far above that is not HubSpot
TIMESTAMP_MS = re.compile(r"^[0-9]{1,15}$")

BigId = StrictInt  # kept strict: the database casts the raw JSON, which must hold an integer


class HubSpotEvent(BaseModel):
    """One event of a delivery. Only what is recorded is checked; the rest is kept as sent."""

    model_config = ConfigDict(extra="allow")

    event_id: BigId = Field(alias="eventId", ge=0, lt=2**63)
    subscription_type: str = Field(alias="subscriptionType", min_length=1, max_length=200)
    occurred_at: BigId = Field(alias="occurredAt", ge=0, lt=10**15)  # milliseconds
    object_id: BigId | None = Field(None, alias="objectId", ge=0, lt=2**63)
    portal_id: BigId | None = Field(None, alias="portalId", ge=0, lt=2**63)


def v3_signature(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_matches(client_secret: str, method: str, uri: str, body: bytes, timestamp: str, given: str) -> bool:
    expected = v3_signature(client_secret, method, uri, body, timestamp)
    return hmac.compare_digest(expected.encode(), given.encode())


def delivery_hash(signature: str, timestamp: str) -> str:
    """Identifies one signed request: the same signature and timestamp again is a replay."""
    return hashlib.sha256(f"{signature}\n{timestamp}".encode()).hexdigest()


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """The delivery's events as sent, once each has the fields we record; InvalidInput otherwise."""
    try:
        events = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("the body is not JSON") from exc
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise InvalidInput(f"the body must be a JSON array of 1 to {MAX_EVENTS} events")
    try:
        for event in events:
            HubSpotEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidInput("an event does not fit HubSpot's shape",
                           details={"errors": exc.errors(include_url=False, include_context=False)}) from exc
    return events
