"""An in-memory HubSpot on 127.0.0.1 for the real SDK: the CRM v3 object, search, batch read and
pipeline endpoints and the v4 association batch read, with HubSpot's JSON shapes (objects
`{"id","properties","createdAt","updatedAt","archived"}`, pages `{"results","paging":{"next":{"after"}}}`,
errors `{"status":"error","message","correlationId","category"}`), Bearer authentication, and faults
a test can inject in front of any request."""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fake_http import FakeServer, Recorded, Reply

TOKEN = "pat-na1-00000000-1111-2222-3333-444444444444"
OBJECT_TYPES = ("contacts", "deals", "tickets", "notes", "tasks")
DEAL_STAGES = [
    ("appointmentscheduled", False),
    ("qualifiedtobuy", False),
    ("presentationscheduled", False),
    ("decisionmakerboughtin", False),
    ("contractsent", False),
    ("closedwon", True),
    ("closedlost", True),
]
TICKET_STAGES = [("1", "OPEN"), ("2", "OPEN"), ("3", "OPEN"), ("4", "CLOSED")]
EPOCH = "2026-01-01T00:00:00Z"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error(status: int, message: str, category: str, **extra: str) -> Reply:
    return Reply(
        status,
        {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category, **extra},
    )


def rate_limited(retry_after: str | None = None) -> Reply:
    reply = error(
        429, "You have reached your ten_secondly_rolling limit.", "RATE_LIMITS", policyName="TEN_SECONDLY_ROLLING"
    )
    if retry_after is not None:
        reply.headers["Retry-After"] = retry_after
    return reply


@dataclass
class Fault:
    """Answer `reply` instead of HubSpot; with `apply`, HubSpot first does the work (a create whose
    answer is lost); with `hold`, the answer waits until the server closes (a timeout)."""

    when: Callable[[Recorded], bool]
    reply: Reply
    apply: bool = False
    hold: bool = False


def _comparable(value: Any) -> Any:
    """Dates arrive as ISO strings in properties and as ms epochs in filters: compare as ms."""
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return text


def _matches(props: dict[str, Any], flt: dict[str, Any]) -> bool:
    value = props.get(flt["propertyName"])
    present = value not in (None, "")
    op = flt["operator"]
    if op == "HAS_PROPERTY":
        return present
    if op == "NOT_HAS_PROPERTY":
        return not present
    if op == "NOT_IN":
        return not present or str(value) not in flt["values"]
    if not present:
        return False
    if op == "IN":
        return str(value) in flt["values"]
    if op == "CONTAINS_TOKEN":
        return flt["value"].lower() in {t.lower() for t in re.split(r"[^A-Za-z0-9]+", str(value))}
    left, right = _comparable(value), _comparable(flt["value"])
    return {
        "EQ": left == right,
        "NEQ": left != right,
        "LT": left < right,
        "LTE": left <= right,
        "GT": left > right,
        "GTE": left >= right,
    }[op]


class FakeHubSpot:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in OBJECT_TYPES}
        self.associations: list[tuple[str, str, str, str, int]] = []  # from type, from id, to type, to id, type id
        self.faults: list[Fault] = []
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self.server = FakeServer(self.respond)
        self.url = self.server.url
        self.tokens = {TOKEN}  # the access tokens this account accepts

    def __enter__(self) -> FakeHubSpot:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def requests(self) -> list[Recorded]:
        return self.server.requests

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and urlsplit(r.path).path == path]

    def inject(
        self, when: Callable[[Recorded], bool], *replies: Reply, apply: bool = False, hold: bool = False
    ) -> None:
        self.faults.extend(Fault(when, reply, apply, hold) for reply in replies)

    def add(self, object_type: str, created_at: str = EPOCH, **properties: str | None) -> str:
        object_id = str(next(self._ids))
        self.objects[object_type][object_id] = {
            "id": object_id,
            "createdAt": created_at,
            "updatedAt": created_at,
            "archived": False,
            "properties": {"createdate": created_at, "hs_object_id": object_id, **properties},
        }
        return object_id

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int) -> None:
        self.associations.append((from_type, from_id, to_type, to_id, type_id))

    # --- the HTTP side ----------------------------------------------------------------------
    def respond(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") not in {f"Bearer {token}" for token in self.tokens}:
            return error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")
        with self._lock:
            fault = next((f for f in self.faults if f.when(request)), None)
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None:
            if fault.apply:
                self._route(request)
            if fault.hold:
                self.server.release.wait(10)
            return fault.reply
        return self._route(request)

    def _route(self, request: Recorded) -> Reply:
        parts = urlsplit(request.path)
        path, query = parts.path, parse_qs(parts.query)
        body = request.json() if request.body else {}
        routes: list[tuple[str, str, Callable[..., Reply]]] = [
            ("GET", r"/crm/v3/pipelines/(\w+)", lambda kind: self._pipelines(kind)),
            ("POST", r"/crm/v3/objects/(\w+)/search", lambda kind: self._search(kind, body)),
            ("POST", r"/crm/v3/objects/(\w+)/batch/read", lambda kind: self._batch_read(kind, body)),
            (
                "POST",
                r"/crm/v4/associations/(\w+)/(\w+)/batch/read",
                lambda src, dst: self._associations(src, dst, body),
            ),
            ("POST", r"/crm/v3/objects/(\w+)", lambda kind: self._create(kind, body)),
            (
                "GET",
                r"/crm/v3/objects/(\w+)/(\d+)",
                lambda kind, oid: self._get(kind, oid, query.get("properties", [])),
            ),
            ("PATCH", r"/crm/v3/objects/(\w+)/(\d+)", lambda kind, oid: self._update(kind, oid, body)),
        ]
        for method, pattern, handle in routes:
            match = re.fullmatch(pattern, path)
            if match and request.method == method:
                with self._lock:
                    return handle(*match.groups())
        return error(404, f"no route {request.method} {path}", "OBJECT_NOT_FOUND")

    def _view(self, obj: dict[str, Any], properties: list[str]) -> dict[str, Any]:
        props = obj["properties"]
        shown = {name: props.get(name) for name in properties} if properties else dict(props)
        shown.update({"hs_object_id": obj["id"], "createdate": props["createdate"]})
        return {**obj, "properties": shown}

    def _pipelines(self, kind: str) -> Reply:
        def stage(stage_id: str, order: int, metadata: dict[str, str]) -> dict[str, Any]:
            return {
                "id": stage_id,
                "label": stage_id,
                "displayOrder": order,
                "metadata": metadata,
                "createdAt": EPOCH,
                "updatedAt": EPOCH,
                "archived": False,
            }

        if kind == "deals":
            stages = [
                stage(sid, n, {"isClosed": str(closed).lower(), "probability": "0.5"})
                for n, (sid, closed) in enumerate(DEAL_STAGES)
            ]
        else:
            stages = [stage(sid, n, {"ticketState": state}) for n, (sid, state) in enumerate(TICKET_STAGES)]
        return Reply(
            200,
            {
                "results": [
                    {
                        "id": "default" if kind == "deals" else "0",
                        "label": "Pipeline",
                        "displayOrder": 0,
                        "stages": stages,
                        "createdAt": EPOCH,
                        "updatedAt": EPOCH,
                        "archived": False,
                    }
                ]
            },
        )

    def _search(self, kind: str, body: dict[str, Any]) -> Reply:
        groups = body.get("filterGroups") or []
        found = [
            obj
            for obj in self.objects[kind].values()
            if not groups or any(all(_matches(obj["properties"], f) for f in g["filters"]) for g in groups)
        ]
        for sort in reversed(body.get("sorts") or []):
            name, descending = sort["propertyName"], sort.get("direction") == "DESCENDING"
            found.sort(
                key=lambda obj, name=name: (
                    obj["properties"].get(name) in (None, ""),
                    _comparable(obj["properties"].get(name) or 0),
                ),
                reverse=descending,
            )
        start, limit = int(body.get("after") or 0), int(body.get("limit") or 10)
        page = found[start : start + limit]
        answer: dict[str, Any] = {
            "total": len(found),
            "results": [self._view(obj, body.get("properties") or []) for obj in page],
        }
        if start + limit < len(found):
            answer["paging"] = {"next": {"after": str(start + limit), "link": "?after=" + str(start + limit)}}
        return Reply(200, answer)

    def _batch(self, results: list[dict[str, Any]]) -> Reply:
        now = iso(datetime.now(UTC))
        return Reply(200, {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now})

    def _batch_read(self, kind: str, body: dict[str, Any]) -> Reply:
        return self._batch(
            [
                self._view(self.objects[kind][item["id"]], body.get("properties") or [])
                for item in body["inputs"]
                if item["id"] in self.objects[kind]
            ]
        )

    def _associations(self, src: str, dst: str, body: dict[str, Any]) -> Reply:
        results = []
        for item in body["inputs"]:
            linked = [
                {
                    "toObjectId": int(to_id),
                    "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}],
                }
                for from_type, from_id, to_type, to_id, type_id in self.associations
                if (from_type, from_id, to_type) == (src, item["id"], dst)
            ]
            if linked:
                results.append({"from": {"id": item["id"]}, "to": linked})
        return self._batch(results)

    def _create(self, kind: str, body: dict[str, Any]) -> Reply:
        object_id = self.add(kind, created_at=iso(datetime.now(UTC)), **body["properties"])
        for association in body.get("associations") or []:
            target = next((t for t in OBJECT_TYPES if association["to"]["id"] in self.objects[t]), None)
            if target is None:
                del self.objects[kind][object_id]
                return error(400, f"association target {association['to']['id']} not found", "VALIDATION_ERROR")
            for spec in association["types"]:
                self.associate(kind, object_id, target, association["to"]["id"], spec["associationTypeId"])
        return Reply(201, self._view(self.objects[kind][object_id], []))

    def _get(self, kind: str, object_id: str, properties: list[str]) -> Reply:
        obj = self.objects[kind].get(object_id)
        if obj is None:
            return error(404, f"Object not found.  objectId are usually numeric.  {object_id}", "OBJECT_NOT_FOUND")
        names = [name for value in properties for name in value.split(",")]
        return Reply(200, self._view(obj, names))

    def _update(self, kind: str, object_id: str, body: dict[str, Any]) -> Reply:
        obj = self.objects[kind].get(object_id)
        if obj is None:
            return error(404, f"Object not found.  {object_id}", "OBJECT_NOT_FOUND")
        obj["properties"].update(body["properties"])
        obj["updatedAt"] = iso(datetime.now(UTC))
        return Reply(200, self._view(obj, []))


def is_call(method: str, path: str) -> Callable[[Recorded], bool]:
    return lambda request: request.method == method and urlsplit(request.path).path == path


def body_of(request: Recorded) -> Any:
    return json.loads(request.body)
