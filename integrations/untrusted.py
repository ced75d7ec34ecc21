"""Data from outside, made safe to keep: the one cleaner, the strict JSON reader, and the check
that names the field a client got wrong.

PostgreSQL text and jsonb cannot hold U+0000, and no UTF-8 encoder (psycopg's, httpx's, pydantic's)
accepts half a surrogate pair, which a JSON "\\ud800" escape decodes to. One such character in a CRM
field, a ticket, a Notion page, a webhook body or the model's answer must not sink the work around
it, so where that data enters opsdesk it is cleaned: `storable` drops U+0000 and turns a lone
surrogate into U+FFFD, in a str or, structurally, in every key and value of nested dicts and lists
(`Storable` does it for every field of a pydantic model, before validation).

A client's request is the client's mistake instead: `first_problem` finds the first value opsdesk
cannot keep (that text, or a NaN or an Infinity, which JSON does not have and jsonb refuses), with
its place, so the answer is a 4xx naming the field. `strict_json` reads JSON from outside that way,
after refusing nesting deeper than any real request needs (Python's own reader would otherwise
recurse until it crashes).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from pydantic import BaseModel, ValidationError, model_validator

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# what changes the nesting depth of JSON text, and what can hide a bracket (a string)
_ARRAY_TOKENS = re.compile(r'[\[\]{}",\\]')
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: no per-character alternation
_BRACKETS = re.compile(r"[\[\]{}]")
# what in JSON text can decode to U+0000 or half a surrogate pair: its escapes, or a raw NUL
_SUSPECT_ESCAPE = re.compile(r"(?i)\\u(?:0000|d[89a-f][0-9a-f]{2})|\x00")
MAX_JSON_DEPTH = 64  # a request nested deeper is no request opsdesk takes

Loc = list[str | int]


@dataclass(frozen=True)
class Problem:
    loc: Loc
    what: str

    @property
    def where(self) -> str:
        return ".".join(str(part) for part in self.loc) or "(the body)"


class UnusableJson(ValueError):
    """JSON that is not JSON opsdesk can keep: `problem` says where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.where}: {problem.what}")
        self.problem = problem


def storable_text(text: str) -> str:
    if not _UNSTORABLE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def storable(value: Any) -> Any:
    """`value` with every str in it (dict keys included) made storable; containers are copied
    (tuples become lists, as JSON has them), everything else is kept as it is. Iterative, so a
    deeply nested value cannot exhaust the stack."""
    if isinstance(value, str):
        return storable_text(value)
    if not isinstance(value, (dict, list, tuple)):
        return value
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    pending: list[tuple[Any, dict[Any, Any] | list[Any]]] = [(value, root)]
    while pending:
        source, target = pending.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in pairs:
            if isinstance(item, (dict, list, tuple)):
                copied: Any = {} if isinstance(item, dict) else []
                pending.append((item, copied))
            else:
                copied = storable_text(item) if isinstance(item, str) else item
            if isinstance(target, dict):
                target[storable_text(key) if isinstance(key, str) else key] = copied
            else:
                target.append(copied)
    return root


def _text_problem(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "holds a NUL character (U+0000), which opsdesk cannot store"
    return "holds half of a UTF-16 surrogate pair, which is not text"


def _clean(value: Any) -> bool:
    """No problem anywhere in `value`: the common case, checked without building locations."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return False
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            if any(isinstance(key, str) and _UNSTORABLE.search(key) for key in item):
                return False
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return True


def first_problem(value: Any) -> Problem | None:
    """The first place in `value` (a str, or JSON-like nested dicts and lists) holding what opsdesk
    cannot keep: U+0000, a lone surrogate (in a value or a key), a NaN or an infinite number."""
    if _clean(value):
        return None
    pending: list[tuple[Loc, Any]] = [([], value)]
    while pending:
        loc, item = pending.pop()
        if isinstance(item, str):
            what = _text_problem(item)
            if what:
                return Problem(loc, what)
        elif isinstance(item, float) and not math.isfinite(item):
            return Problem(loc, f"is {item!r}: JSON has no NaN or Infinity; send a number or null")
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                key_problem = _text_problem(key) if isinstance(key, str) else None
                if key_problem:
                    return Problem([*loc, storable_text(key)], f"is a key that {key_problem}")
                pending.append(([*loc, key], child))
        elif isinstance(item, (list, tuple)):
            pending.extend(([*loc, index], child) for index, child in reversed(list(enumerate(item))))
    return None


def depth_passes(text: str, limit: int) -> bool:
    """True when JSON `text` nests arrays and objects deeper than `limit` (brackets inside strings
    do not count). Reads the text without recursing: strings are cut out, then the brackets left
    are summed, both at C speed."""
    if text.count("[") + text.count("{") <= limit:
        return False
    steps = (1 if char in "[{" else -1 for char in _BRACKETS.findall(_JSON_STRING.sub("", text)))
    return max(accumulate(steps), default=0) > limit


def array_items(text: str) -> list[str]:
    """The items of the JSON array `text` as unparsed text, found without parsing them (so each can
    be read, or refused, on its own). ValueError when `text` is not one array of items."""
    opened = text.lstrip()
    if not opened.startswith("["):
        raise ValueError("not a JSON array")
    offset = len(text) - len(opened)
    items: list[str] = []
    depth = 0
    start = offset + 1
    in_string = escaped = False
    for token in _ARRAY_TOKENS.finditer(text, offset + 1):
        char, at = token.group(), token.start()
        if in_string:
            if escaped:
                escaped = False
                continue
            if char == "\\":
                escaped = token.end() < len(text) and text[token.end()] in '\\"'
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}" and depth:
            depth -= 1
        elif char in ",]" and not depth:
            item = text[start:at].strip()
            if not item and (char == "," or items):
                raise ValueError(f"an empty item at character {at}")
            if item:
                items.append(item)
            if char == "]":
                if text[at + 1 :].strip():
                    raise ValueError(f"more after the array at character {at + 1}")
                return items
            start = at + 1
    raise ValueError("the array is not closed")


def strict_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from outside: ValueError when it is not JSON, UnusableJson when it is JSON opsdesk cannot
    keep (too deep, NaN or Infinity, U+0000, a lone surrogate), naming where. The value is walked
    for the place only when the text or the parse shows there is something to find."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if depth_passes(text, max_depth):
        raise UnusableJson(Problem([], f"nests arrays and objects more than {max_depth} deep"))
    suspect = [bool(_SUSPECT_ESCAPE.search(text))]

    def number(literal: str) -> float:
        value = float(literal)
        suspect[0] = suspect[0] or not math.isfinite(value)  # 1e999 reads as infinity
        return value

    def constant(name: str) -> float:
        suspect[0] = True
        return float(name)

    value = json.loads(text, parse_float=number, parse_constant=constant)
    problem = first_problem(value) if suspect[0] else None
    if problem is not None:
        raise UnusableJson(problem)
    return value


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """A ValidationError as a client may see it: where, what, which rule. Never the input itself
    (it may be huge, secret, or not serialisable: a NaN), never a URL or a context object."""
    return [
        {
            "loc": [part if isinstance(part, int) else storable_text(str(part)) for part in error["loc"]],
            "msg": storable_text(str(error["msg"])),
            "type": str(error["type"]),
        }
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def json_safe(value: Any) -> Any:
    """`value` as JSON can always carry it: NaN and infinities as their names, unknown objects as
    their str, text storable. For error bodies, which must never fail to serialise."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return storable_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {storable_text(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return storable_text(str(value))


class Storable(BaseModel):
    """A model of data from outside: every str in its input is made storable before validation."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return storable(data)
