"""The GraphQL side of the fake Buffer: the schema (fake_buffer_schema.graphql, built with
graphql-core), how it answers fields of plain dicts, and how it refuses what it does not model."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import graphql as gql
from graphql import GraphQLError, GraphQLResolveInfo

from tests import fake_buffer_model as model

if TYPE_CHECKING:
    from tests.fake_buffer import FakeBuffer

OPERATIONS = (
    "account",
    "dailyPostingLimits",
    "channel",
    "channels",
    "aggregatedPostMetrics",
    "ideas",
    "posts",
    "post",
    "createPost",
    "editPost",
    "deletePost",
    "createIdea",
)

SCHEMA = gql.build_schema((Path(__file__).parent / "fake_buffer_schema.graphql").read_text())
UNMODELLED = frozenset(
    name for name, kind in SCHEMA.type_map.items() if set(getattr(kind, "fields", {})) == {"_unmodelled"}
)


def _refuse(*_: Any) -> Any:
    raise model.NotModelled("an input or output typed Unmodelled in fake_buffer_schema.graphql")


SCHEMA.type_map["Unmodelled"].serialize = SCHEMA.type_map["Unmodelled"].parse_value = _refuse  # type: ignore[union-attr]
SCHEMA.type_map["Unmodelled"].parse_literal = _refuse  # type: ignore[union-attr]


def error(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


def as_time(text: Any) -> datetime:
    try:
        return model.parse_time(text)
    except ValueError as exc:
        raise error("BAD_USER_INPUT", str(exc)) from exc


def resolve_field(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Objects are dicts; a field the fake left out of one is one it does not model."""
    if isinstance(source, dict):
        if info.field_name not in source:
            raise model.NotModelled(f"{info.parent_type.name}.{info.field_name}")
        return source[info.field_name]
    return gql.default_field_resolver(source, info, **args)


def refuse_unmodelled(value: Any, kind: Any) -> None:
    """Refuse a value given for an input field typed Unmodelled, however deep (graphql-core 3.3 coerces
    custom scalars lazily, so the scalar's own parse_value may never run)."""
    named = gql.get_named_type(kind)
    if value is None:
        return
    if named.name == "Unmodelled":
        raise model.NotModelled("an input field typed Unmodelled in fake_buffer_schema.graphql")
    if isinstance(value, list):
        for item in value:
            refuse_unmodelled(item, named)
    elif isinstance(named, gql.GraphQLInputObjectType) and isinstance(value, dict):
        for key, item in value.items():
            if key in named.fields:
                refuse_unmodelled(item, named.fields[key].type)


def original(error: GraphQLError) -> BaseException | None:
    cause: BaseException | None = error.original_error
    while isinstance(cause, GraphQLError) and cause.original_error is not None:
        cause = cause.original_error
    return cause


class Root:
    """The operations: graphql-core calls `root.<field>(info, **args)` for each top-level field."""

    def __init__(self, fake: FakeBuffer) -> None:
        self._fake = fake

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in OPERATIONS:
            raise AttributeError(name)
        return lambda info, **args: self._fake._top_level(name, info, args)
