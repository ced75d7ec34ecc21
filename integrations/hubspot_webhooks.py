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

from integrations.errors import InvalidRequest
from integrations.untrusted import array_items, depth_passes, first_problem, storable, storable_text, validation_errors

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE_SECONDS = 300
MAX_EVENTS = 1000  # HubSpot batches up to 100 events per request; far above that is not HubSpot
TIMESTAMP_MS = re.compile(r"^[0-9]{1,15}$")
MAX_EVENT_DEPTH = 16  # HubSpot's events are flat objects; far deeper is not HubSpot
RAW_KEPT_CHARS = 4000  # of an event set aside, kept for a person to look at

SYSTEM = "hubspot"

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


class SetAside(BaseModel):
    """An event of a delivery that cannot be recorded as sent, kept (clipped) with the reason."""

    index: int
    reason: str
    raw: str


class Delivery(BaseModel):
    events: list[dict[str, Any]]
    set_aside: list[SetAside]


class _Unrecordable(ValueError):
    """One event that cannot be recorded; its text is the reason kept with it."""


def parse_delivery(body: bytes) -> Delivery:
    """The delivery's events, each read on its own: one that cannot be recorded (NaN or Infinity,
    nesting no event has, not HubSpot's shape) is set aside with the reason, the others are kept,
    their text made storable (a NUL dropped). InvalidRequest when the body is not an array of 1 to
    MAX_EVENTS items, or when no event in it can be recorded."""
    try:
        items = array_items(body.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidRequest(f"the body is not a JSON array of events ({exc})", system=SYSTEM) from exc
    if not 1 <= len(items) <= MAX_EVENTS:
        raise InvalidRequest(f"the body must be a JSON array of 1 to {MAX_EVENTS} events", system=SYSTEM)
    events: list[dict[str, Any]] = []
    set_aside: list[SetAside] = []
    for index, item in enumerate(items):
        try:
            events.append(_event(item))
        except _Unrecordable as exc:
            set_aside.append(
                SetAside(index=index, reason=storable_text(str(exc)), raw=storable_text(item[:RAW_KEPT_CHARS]))
            )
    if not events:
        raise InvalidRequest(
            "no event in the body can be recorded: "
            + "; ".join(f"#{aside.index}: {aside.reason}" for aside in set_aside[:5]),
            system=SYSTEM,
        )
    return Delivery(events=events, set_aside=set_aside)


def _event(item: str) -> dict[str, Any]:
    if depth_passes(item, MAX_EVENT_DEPTH):
        raise _Unrecordable(f"nests arrays and objects more than {MAX_EVENT_DEPTH} deep")
    try:
        event: dict[str, Any] = storable(json.loads(item))  # a NUL or half a surrogate pair: cleaned, the event kept
    except ValueError as exc:
        raise _Unrecordable(f"not JSON ({exc})") from exc
    problem = first_problem(event)  # what is left: a NaN or an Infinity, which no event has
    if problem is not None:
        raise _Unrecordable(f"{problem.where} {problem.what}")
    try:
        HubSpotEvent.model_validate(event)
    except ValidationError as exc:
        first = validation_errors(exc)[0]
        raise _Unrecordable(f"not HubSpot's event shape: {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    return event
