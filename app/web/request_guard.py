"""Every HTTP request is checked before a route reads it: what opsdesk cannot keep is the client's
mistake, answered with a 422 naming the field, never a database error (a 503) or a crash (a 500).

`CheckedRoute` is the route class of the API and its routers (not of the HubSpot webhook, which
verifies a signature over the raw body first and reads its events one by one). Before the route's
own parsing it checks every query parameter (name and value), every path parameter, every form
field (name and value) and a JSON body, which is read with `integrations.untrusted.strict_json`: nesting
deeper than any request needs, NaN and Infinity (JSON has neither; Python's reader accepts them,
and jsonb would refuse them or they would turn into null), U+0000 and half surrogate pairs are
refused, naming where.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.core.errors import InvalidInput
from integrations.untrusted import UnusableJson, first_problem, storable_text, strict_json

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_LABELS = {"query": "query parameter", "path": "path parameter", "form": "form field"}


def _refuse(loc: list[str | int], what: str, shown: str) -> InvalidInput:
    return InvalidInput(f"{shown} {what}", details={"errors": [{"loc": loc, "msg": what, "type": "unusable_input"}]})


def _pairs(where: str, items: list[tuple[str, Any]]) -> None:
    for name, value in items:
        label = f"{_LABELS[where]} {storable_text(name)}"
        problem = first_problem(name)
        if problem is not None:
            raise _refuse([where, storable_text(name)], f"has a name that {problem.what}", label)
        if isinstance(value, str) and (problem := first_problem(value)) is not None:
            raise _refuse([where, name], problem.what, label)


async def check_request(request: Request) -> None:
    _pairs("query", request.query_params.multi_items())
    _pairs("path", list(request.path_params.items()))
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(_FORMS):
        _pairs("form", (await request.form()).multi_items())
    elif "json" in content_type.split(";")[0]:
        body = await request.body()  # kept by the request: the route reads it again, not the stream
        if body.strip():
            try:
                strict_json(body)
            except UnusableJson as exc:
                problem = exc.problem
                raise _refuse(["body", *problem.loc], problem.what, f"the JSON body: {problem.where}") from exc
            except (ValueError, RecursionError):
                return  # not JSON at all: the route answers that itself (400 malformed_json)


class CheckedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            await check_request(request)
            return await handler(request)

        return checked
