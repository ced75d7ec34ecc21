"""How the review page shows a draft. Chosen by the payload's shape, not its kind, so a new kind
needs no page code:

- email-like (`subject` plus `html` or `body`): the message as the recipient would see it, for an
  iframe sandboxed without scripts (the page's Content-Security-Policy applies inside it too), so
  its HTML can neither run nor reach the page;
- a CRM change (`before` and `after` objects, or `changes` as {field: {"from", "to"}}): a
  before/after table;
- anything else: each field as text.

Every other field of the payload is shown as text too: the reviewer sees the whole draft.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from markupsafe import escape

SAMPLE_SIZE = 5
_RECIPIENT_FIELDS = ("recipients", "to")
_PLAIN_EMAIL = (
    '<!doctype html><meta charset="utf-8"><pre style="white-space:pre-wrap;margin:1rem;'
    'font:15px/1.5 system-ui,sans-serif">{}</pre>'
)


@dataclass(frozen=True)
class ShownField:
    name: str
    text: str


@dataclass(frozen=True)
class EmailDraft:
    shape: ClassVar[str] = "email"
    subject: str
    document: str  # the iframe's srcdoc (escaped again by the template's autoescape, as it must be)
    others: list[ShownField]


@dataclass(frozen=True)
class ChangeRow:
    name: str
    before: str
    after: str
    changed: bool


@dataclass(frozen=True)
class ChangeDraft:
    shape: ClassVar[str] = "change"
    rows: list[ChangeRow]
    others: list[ShownField]


@dataclass(frozen=True)
class TextDraft:
    shape: ClassVar[str] = "text"
    fields: list[ShownField]


DraftView = EmailDraft | ChangeDraft | TextDraft


@dataclass(frozen=True)
class Reach:
    recipients: int
    listed: int  # addresses in the payload's own list
    sample: list[str]
    cost_usd: Decimal
    public: bool
    reversible: bool


def shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _others(payload: Mapping[str, Any], used: set[str]) -> list[ShownField]:
    return [ShownField(name, shown(value)) for name, value in payload.items() if name not in used]


def change_rows(changes: Mapping[str, Any]) -> list[ChangeRow]:
    """Rows of a {field: {"from": old, "to": new}} diff (the shape `modifications` is stored in)."""
    rows = []
    for name, change in changes.items():
        before, after = (change.get("from"), change.get("to")) if isinstance(change, Mapping) else (None, change)
        rows.append(ChangeRow(name, shown(before), shown(after), before != after))
    return rows


def _is_diff(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(change, Mapping) and {"from", "to"} <= change.keys() for change in value.values())
    )


def draft_view(payload: Mapping[str, Any]) -> DraftView:
    subject = payload.get("subject")
    html, body = payload.get("html"), payload.get("body")
    if isinstance(subject, str) and (isinstance(html, str) or isinstance(body, str)):
        if isinstance(html, str):
            document, used = html, {"subject", "html"}
        else:
            document, used = _PLAIN_EMAIL.format(escape(body)), {"subject", "body"}
        return EmailDraft(subject, document, _others(payload, used))

    before, after = payload.get("before"), payload.get("after")
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        names = [*after, *(name for name in before if name not in after)]
        rows = [
            ChangeRow(name, shown(before.get(name)), shown(after.get(name)), before.get(name) != after.get(name))
            for name in names
        ]
        return ChangeDraft(rows, _others(payload, {"before", "after"}))
    if _is_diff(payload.get("changes")):
        return ChangeDraft(change_rows(payload["changes"]), _others(payload, {"changes"}))

    return TextDraft(_others(payload, set()))


def _address(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping) and isinstance(entry.get("email"), str):
        name = entry.get("name")
        return f"{name} <{entry['email']}>" if isinstance(name, str) and name else entry["email"]
    return None


def reach(payload: Mapping[str, Any], impact: Mapping[str, Any]) -> Reach:
    """The policy's facts (recipients, money, public, reversible) plus a sample of the addresses
    when the payload lists them."""
    listed: list[Any] = []
    for name in _RECIPIENT_FIELDS:
        value = payload.get(name)
        if isinstance(value, list):
            listed = value
            break
        if isinstance(value, str | Mapping):
            listed = [value]
            break
    sample = [address for address in map(_address, listed[:SAMPLE_SIZE]) if address]
    return Reach(
        recipients=int(impact.get("recipients", 0)),
        listed=len(listed),
        sample=sample,
        cost_usd=Decimal(str(impact.get("cost_usd", 0))),
        public=bool(impact.get("public", False)),
        reversible=bool(impact.get("reversible", True)),
    )
