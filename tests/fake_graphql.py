"""Just enough GraphQL for a fake server: parse one request document (operation, variables,
selections, inline fragments, named fragments), validate its selections against a small schema
table, and project a resolved value onto what the client selected. A fake built on it answers only
the fields a client asks for and refuses a field the real schema does not have, as a GraphQL server
does; a field the schema has but the fake does not model is refused as `NotModelled`, loudly."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class GraphQLSyntaxError(ValueError):
    pass


class GraphQLValidationError(ValueError):
    pass


class NotModelled(NotImplementedError):
    """The real API has it; this fake does not answer it (a test needs a richer fake, not a pass)."""


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class EnumValue:
    name: str


@dataclass
class Field:
    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    selections: list[Selection] | None = None

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class InlineFragment:
    type_condition: str | None
    selections: list[Selection]


@dataclass
class FragmentSpread:
    name: str


Selection = Field | InlineFragment | FragmentSpread


@dataclass
class Operation:
    kind: str  # "query" or "mutation"
    name: str | None
    variable_defaults: dict[str, Any]
    selections: list[Selection]
    fragments: dict[str, InlineFragment]


@dataclass
class Schema:
    """`objects[type][field]` is the field's named type (None for a scalar or enum); `unions` and
    `interfaces` map an abstract type to its members; `interface_fields` lists what an interface
    declares; `unmodelled` holds composite types the fake will not answer."""

    objects: Mapping[str, Mapping[str, str | None]]
    unions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    interfaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    interface_fields: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    unmodelled: frozenset[str] = frozenset()

    def is_composite(self, type_name: str | None) -> bool:
        return type_name is not None and (type_name in self.objects or type_name in self.unions
                                          or type_name in self.interfaces or type_name in self.unmodelled)

    def possible(self, type_name: str) -> frozenset[str]:
        return self.unions.get(type_name) or self.interfaces.get(type_name) or frozenset({type_name})

    def fields_of(self, type_name: str) -> Mapping[str, str | None] | None:
        if type_name in self.objects:
            return self.objects[type_name]
        return self.interface_fields.get(type_name)


_TOKEN = re.compile(r'''
    (?P<skip>[\s,\ufeff]+|\#[^\n]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$():=@\[\]{}|&])
  | (?P<block>"""(?:[^"\\]|\\.|"(?!""))*""")
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
''', re.VERBOSE)


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise GraphQLSyntaxError(f"Syntax Error: Unexpected character {source[pos]!r}.")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "skip":
            out.append((kind, match.group()))
    return out


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.at = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        got_kind, got = self.peek()
        if (value is not None and got != value) or (kind is not None and got_kind != kind) or got_kind == "eof":
            wanted = value or kind
            raise GraphQLSyntaxError(f"Syntax Error: Expected {wanted}, found {got or '<EOF>'!r}.")
        self.at += 1
        return got

    def skip(self, value: str) -> bool:
        if self.peek()[1] == value and self.peek()[0] != "string":
            self.at += 1
            return True
        return False

    def document(self) -> tuple[list[Operation], dict[str, InlineFragment]]:
        operations: list[Operation] = []
        fragments: dict[str, InlineFragment] = {}
        while self.peek()[0] != "eof":
            if self.peek()[1] == "fragment":
                self.take("fragment")
                name = self.take(kind="name")
                self.take("on")
                fragments[name] = InlineFragment(self.take(kind="name"), self.selection_set())
            else:
                operations.append(self.operation())
        for operation in operations:
            operation.fragments = fragments
        return operations, fragments

    def operation(self) -> Operation:
        if self.peek()[1] == "{":
            return Operation("query", None, {}, self.selection_set(), {})
        kind = self.take(kind="name")
        if kind not in ("query", "mutation", "subscription"):
            raise GraphQLSyntaxError(f"Syntax Error: Unexpected Name {kind!r}.")
        name = self.take(kind="name") if self.peek()[0] == "name" else None
        defaults: dict[str, Any] = {}
        if self.skip("("):
            while not self.skip(")"):
                self.take("$")
                var = self.take(kind="name")
                self.take(":")
                self.type_ref()
                defaults[var] = self.value() if self.skip("=") else None
        self.directives()
        return Operation(kind, name, defaults, self.selection_set(), {})

    def type_ref(self) -> None:
        if self.skip("["):
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        self.skip("!")

    def directives(self) -> None:
        if self.peek()[1] == "@":
            raise NotModelled("directives (@include/@skip/...) are not modelled by this fake")

    def selection_set(self) -> list[Selection]:
        self.take("{")
        selections: list[Selection] = []
        while not self.skip("}"):
            if self.peek()[0] == "spread":
                self.take(kind="spread")
                if self.peek()[1] == "on":
                    self.take("on")
                    condition = self.take(kind="name")
                    self.directives()
                    selections.append(InlineFragment(condition, self.selection_set()))
                elif self.peek()[1] == "{":
                    selections.append(InlineFragment(None, self.selection_set()))
                else:
                    selections.append(FragmentSpread(self.take(kind="name")))
                    self.directives()
                continue
            name = self.take(kind="name")
            alias = None
            if self.skip(":"):
                alias, name = name, self.take(kind="name")
            args: dict[str, Any] = {}
            if self.skip("("):
                while not self.skip(")"):
                    arg = self.take(kind="name")
                    self.take(":")
                    args[arg] = self.value()
            self.directives()
            nested = self.selection_set() if self.peek()[1] == "{" else None
            selections.append(Field(name, alias, args, nested))
        return selections

    def value(self) -> Any:
        kind, text = self.peek()
        if text == "$" and kind == "punct":
            self.take("$")
            return Var(self.take(kind="name"))
        if text == "[" and kind == "punct":
            self.take("[")
            items = []
            while not self.skip("]"):
                items.append(self.value())
            return items
        if text == "{" and kind == "punct":
            self.take("{")
            obj: dict[str, Any] = {}
            while not self.skip("}"):
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value()
            return obj
        self.at += 1
        if kind == "string":
            return _unescape(text[1:-1])
        if kind == "block":
            return text[3:-3]
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, EnumValue(text))
        raise GraphQLSyntaxError(f"Syntax Error: Unexpected {text or '<EOF>'!r}.")


def _unescape(text: str) -> str:
    escapes = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    return re.sub(r"\\(u[0-9A-Fa-f]{4}|.)",
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "u" else escapes[m.group(1)], text)


def parse(document: str, operation_name: str | None = None) -> Operation:
    operations, _ = _Parser(document).document()
    if operation_name is not None:
        chosen = [op for op in operations if op.name == operation_name]
        if not chosen:
            raise GraphQLValidationError(f'Unknown operation named "{operation_name}".')
        return chosen[0]
    if len(operations) != 1:
        raise GraphQLValidationError("Must provide operation name if query contains multiple operations.")
    return operations[0]


def resolve_args(raw: Any, variables: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
    """Replace variable references and enum literals with plain Python values."""
    if isinstance(raw, Var):
        return variables.get(raw.name, defaults.get(raw.name))
    if isinstance(raw, EnumValue):
        return raw.name
    if isinstance(raw, list):
        return [resolve_args(item, variables, defaults) for item in raw]
    if isinstance(raw, dict):
        return {key: resolve_args(value, variables, defaults) for key, value in raw.items()}
    return raw


def _expand(selections: list[Selection], fragments: Mapping[str, InlineFragment]) -> list[Field | InlineFragment]:
    out: list[Field | InlineFragment] = []
    for selection in selections:
        if isinstance(selection, FragmentSpread):
            if selection.name not in fragments:
                raise GraphQLValidationError(f'Unknown fragment "{selection.name}".')
            out.append(fragments[selection.name])
        else:
            out.append(selection)
    return out


def validate(schema: Schema, type_name: str, selections: list[Selection],
             fragments: Mapping[str, InlineFragment]) -> None:
    """The checks a GraphQL server runs before executing: known fields, sub-selections where a
    field is composite and none where it is a scalar, fragments only on types that can occur."""
    for selection in _expand(selections, fragments):
        if isinstance(selection, InlineFragment):
            condition = selection.type_condition or type_name
            if not schema.possible(condition) & schema.possible(type_name):
                raise GraphQLValidationError(
                    f'Fragment cannot be spread here as objects of type "{type_name}" can never be of type '
                    f'"{condition}".')
            validate(schema, condition, selection.selections, fragments)
            continue
        if selection.name == "__typename":
            continue
        if type_name in schema.unmodelled:
            raise NotModelled(f"fake does not model fields of {type_name}")
        fields = schema.fields_of(type_name)
        if fields is None or selection.name not in fields:
            hint = ""
            if type_name in schema.unions:
                hint = " Did you mean to use an inline fragment?"
            raise GraphQLValidationError(f'Cannot query field "{selection.name}" on type "{type_name}".{hint}')
        child = fields[selection.name]
        if schema.is_composite(child) and selection.selections is None:
            raise GraphQLValidationError(
                f'Field "{selection.name}" of type "{child}" must have a selection of subfields.')
        if not schema.is_composite(child) and selection.selections is not None:
            raise GraphQLValidationError(
                f'Field "{selection.name}" must not have a selection since its type has no subfields.')
        if child is not None and selection.selections is not None:
            validate(schema, child, selection.selections, fragments)


def project(schema: Schema, value: Any, selections: list[Selection],
            fragments: Mapping[str, InlineFragment]) -> Any:
    """Keep what the client selected: an object is a dict carrying its `__typename`."""
    if value is None:
        return None
    if isinstance(value, list):
        return [project(schema, item, selections, fragments) for item in value]
    runtime = value["__typename"]
    out: dict[str, Any] = {}
    for selection in _expand(selections, fragments):
        if isinstance(selection, InlineFragment):
            condition = selection.type_condition
            if condition is None or runtime in schema.possible(condition):
                out.update(project(schema, value, selection.selections, fragments))
            continue
        if selection.name == "__typename":
            out[selection.key] = runtime
            continue
        if selection.name not in value:
            raise NotModelled(f"fake does not model {runtime}.{selection.name}")
        child = value[selection.name]
        out[selection.key] = child if selection.selections is None else project(
            schema, child, selection.selections, fragments)
    return out
