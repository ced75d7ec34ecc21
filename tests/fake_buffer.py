"""A fake Buffer on 127.0.0.1: the GraphQL API (api.buffer.com) and its OAuth server
(auth.buffer.com, tests/fake_buffer_oauth.py), each on its own port, sharing one state and clock.

The API answers `POST /` (and `/graphql`) with a JSON body `{"query", "variables", "operationName"}`
and a Bearer token (the personal API key or a live OAuth access token). graphql-core runs each
request against Buffer's schema (tests/fake_buffer_schema.graphql), so selections, fragments,
variables and input coercion behave as a GraphQL server's do, and only what was selected comes
back. Modelled: `account`, `channels`, `channel`, `posts` (Relay cursors `first`/`after`,
`edges{cursor node}`, `pageInfo`), `post`, `dailyPostingLimits`, `createPost` (the
`PostActionPayload` union); anything else of Buffer's answers HTTP 501, never a guess.
Errors come in Buffer's documented shapes: typed `MutationError` members in `data` at HTTP 200,
`errors[].extensions.code` (UNAUTHORIZED, FORBIDDEN, NOT_FOUND, UNEXPECTED, RATE_LIMIT_EXCEEDED) at
HTTP 200, HTTP 401 `UNAUTHENTICATED`, and HTTP 429 with `retryAfter` in the body and
`RateLimit-Limit/-Remaining/-Reset` headers over rolling per-client windows. Tests inject `Fault`s:
a typed error, an error code, a raw reply, or a lost answer (the post is made, then the answer is
held until the client times out, or the connection drops). What the fake decides where Buffer
documents nothing (queue slots, statuses per mode, default page size and order) is listed in
docs/vendors/buffer.md (from
https://developers.buffer.com/guides/ and https://developers.buffer.com/reference.html)."""

from __future__ import annotations

import itertools
import mimetypes
import re
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import graphql as gql
from graphql import GraphQLError, GraphQLResolveInfo

from tests import fake_buffer_graphql as bgql
from tests import fake_buffer_model as model
from tests.fake_buffer_oauth import FakeBufferAuth, ManualClock
from tests.fake_http import DropConnection, FakeServer, Recorded, Reply, quiet_disconnects

API_KEY = "buf_test_personal_key_0123456789abcdef"
ORG_ID = model.ORG_ID
CLIENT_ID = "opsdesk-test-client"
CLIENT_SECRET = "opsdesk-test-client-secret"
REDIRECT_URI = "http://127.0.0.1:9/buffer/callback"
UNAUTHENTICATED = "An authentication JWT or Access Token is required"
TOO_MANY = "Too many requests from this client. Please try again later."
# (window name, requests, seconds): Buffer's Free plan (developers.buffer.com/guides/api-limits.html)
FREE_PLAN_LIMITS = (("15m", 100, 900), ("24h", 100, 86_400), ("30d", 3_000, 2_592_000))
DEFAULT_PAGE_SIZE = 20  # the fake's choice: Buffer documents none


@dataclass
class Fault:
    """Answered instead of the next request whose top-level field is `operation` ("*": any)."""

    operation: str
    typed_error: str | None = None  # a PostActionPayload error member, in `data` at HTTP 200
    message: str = "Something went wrong"
    code: str | None = None  # an errors[].extensions.code, at HTTP 200 with data null
    reply: Reply | None = None  # a raw HTTP answer (502, 503, a 429 with other headers ...)
    lost: Literal["hold", "drop"] | None = None  # the work is done; the answer never arrives
    extra: dict[str, Any] = field(default_factory=dict)  # more fields of the typed error (RestProxyError)


class FakeBuffer:
    def __init__(self, clock: Callable[[], datetime] | None = None, seed: bool = True) -> None:
        self.clock = clock or ManualClock()
        self.release = threading.Event()  # set when the fake stops: ends every held answer
        self.api = FakeServer(self._respond_api)
        self.auth_server = FakeServer(self._respond_auth)
        for server in (self.api, self.auth_server):
            quiet_disconnects(server)
        self.oauth = FakeBufferAuth(self.clock, lambda: self.auth_server.url, self.release)
        self.oauth.register_client(CLIENT_ID, CLIENT_SECRET, (REDIRECT_URI,))
        self.api_keys = {API_KEY}
        self.organizations = [{"id": ORG_ID, "name": "My Organization", "ownerEmail": "owner@example.com"}]
        self.channels: dict[str, model.Channel] = {}
        self.posts: dict[str, model.Post] = {}
        self.faults: list[Fault] = []
        self.limits: list[tuple[str, int, int]] = list(FREE_PLAN_LIMITS)
        self.retry_after_header = False  # Buffer's docs put the wait in the body only (extensions.retryAfter)
        self.bad_token_style: Literal["http401", "graphql"] = "http401"
        self.operations: list[tuple[str, dict[str, Any]]] = []  # (top-level field, its arguments)
        self.lost_answers = 0
        self.lost = threading.Event()  # set once the work of a lost answer is done
        self.internal_errors: list[str] = []
        self.windows = model.RateWindows()
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        if seed:
            self.add_channel("twitter", "opsdesk", metadata={"__typename": "TwitterMetadata", "subscriptionType": None})
            self.add_channel(
                "linkedin",
                "Opsdesk Inc",
                type="page",
                metadata={"__typename": "LinkedInMetadata", "shouldShowLinkedinAnalyticsRefreshBanner": False},
            )
            self.add_channel(
                "mastodon",
                "opsdesk",
                metadata={
                    "__typename": "MastodonMetadata",
                    "maxCharacters": 500,
                    "serverUrl": "https://mastodon.social",
                },
            )
            self.add_channel(
                "bluesky",
                "opsdesk.bsky.social",
                metadata={"__typename": "BlueskyMetadata", "serverUrl": "https://bsky.social"},
            )

    def __enter__(self) -> FakeBuffer:
        self.api.__enter__()
        self.auth_server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.auth_server.__exit__(*exc)
        self.api.__exit__(*exc)

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def auth_url(self) -> str:
        return self.auth_server.url

    # --- set-up and inspection -------------------------------------------------------------------
    def new_id(self) -> str:
        return f"66{next(self._ids):022x}"

    def add_channel(self, service: str, name: str, **fields: Any) -> model.Channel:
        channel = model.Channel(self.new_id(), service, name, **fields)
        self.channels[channel.id] = channel
        return channel

    def channel(self, service: str) -> model.Channel:
        return next(c for c in self.channels.values() if c.service == service)

    def add_post(
        self,
        channel: model.Channel,
        text: str,
        status: str = "sent",
        via: str = "buffer",
        created_at: datetime | None = None,
        due_at: datetime | None = None,
    ) -> model.Post:
        created = created_at or self.clock()
        post = model.Post(
            self.new_id(),
            channel,
            text,
            status,
            "addToQueue",
            "automatic",
            created,
            due_at or created,
            via=via,
            sent_at=(due_at or created) if status == "sent" else None,
        )
        with self._lock:
            self.posts[post.id] = post
        return post

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def created_posts(self) -> list[model.Post]:
        """Posts made through createPost, oldest first."""
        with self._lock:
            return sorted((p for p in self.posts.values() if p.via == "api"), key=lambda p: p.id)

    def calls(self, operation: str) -> list[dict[str, Any]]:
        with self._lock:
            return [args for name, args in self.operations if name == operation]

    # --- HTTP ------------------------------------------------------------------------------------
    def _respond_auth(self, request: Recorded) -> Reply:
        return self.oauth.respond(request)

    def _respond_api(self, request: Recorded) -> Reply:
        try:
            return self._api(request)
        except DropConnection:
            raise
        except model.NotModelled as exc:
            return Reply(501, {"errors": [{"message": f"fake_buffer does not model this: {exc}"}]})
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            return Reply(500, {"errors": [{"message": "fake_buffer internal error (see internal_errors)"}]})

    def _client_of(self, request: Recorded) -> str | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token in self.api_keys:
            return f"key:{token}"
        client_id = self.oauth.access_client(token) if token else None
        return f"oauth:{client_id}" if client_id else None

    def _api(self, request: Recorded) -> Reply:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return Reply(401, {"errors": [{"message": UNAUTHENTICATED, "extensions": {"code": "UNAUTHENTICATED"}}]})
        client = self._client_of(request)
        if client is None:
            if self.bad_token_style == "graphql":
                return Reply(
                    200,
                    {"data": None, "errors": [{"message": "Not authorized", "extensions": {"code": "UNAUTHORIZED"}}]},
                )
            return Reply(
                401,
                {"errors": [{"message": "Invalid or expired access token", "extensions": {"code": "UNAUTHENTICATED"}}]},
            )
        if request.method != "POST" or urlsplit(request.path).path not in ("/", "/graphql"):
            return Reply(404, {"errors": [{"message": "Not found"}]})
        allowed, headers, retry_after = self.windows.take(client, self.clock(), self.limits)
        if not allowed:
            if self.retry_after_header:
                headers["Retry-After"] = str(retry_after)
            return Reply(
                429,
                {
                    "errors": [
                        {
                            "message": TOO_MANY,
                            "extensions": {
                                "code": "RATE_LIMIT_EXCEEDED",
                                "limitType": "CLIENT_ACCOUNT",
                                "retryAfter": retry_after,
                            },
                        }
                    ]
                },
                headers,
            )
        reply = self._graphql(request)
        for name, value in headers.items():
            reply.headers.setdefault(name, value)
        return reply

    def _graphql(self, request: Recorded) -> Reply:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return Reply(
                400,
                {
                    "errors": [
                        {
                            "message": "POST body missing, invalid, or missing 'query'",
                            "extensions": {"code": "BAD_REQUEST"},
                        }
                    ]
                },
            )
        try:
            document = gql.parse(body["query"])
        except gql.GraphQLSyntaxError as exc:
            return Reply(400, {"errors": [{"message": exc.message, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]})
        problems = gql.validate(bgql.SCHEMA, document)
        if gql.get_operation_ast(document, body.get("operationName")) is None:
            problems.append(GraphQLError("Must provide a known operation name when the query holds several."))
        for problem in problems:
            named = set(re.findall(r"'(\w+)'", problem.message))
            if named & (bgql.UNMODELLED | {"Unmodelled"}) or any(n.endswith("PostMetadata") for n in named):
                raise model.NotModelled(problem.message)
        if problems:
            return Reply(
                400,
                {
                    "errors": [
                        {"message": p.message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for p in problems
                    ]
                },
            )
        context: dict[str, Any] = {"lost": None, "reply": None}
        result: gql.ExecutionResult = gql.execute(  # type: ignore[assignment]
            bgql.SCHEMA,
            document,
            root_value=bgql.Root(self),
            context_value=context,
            field_resolver=bgql.resolve_field,
            variable_values=body.get("variables") or {},
            operation_name=body.get("operationName"),
        )
        if context["reply"] is not None:
            return context["reply"]
        errors = result.errors or []
        for cause in map(bgql.original, errors):
            if isinstance(cause, model.NotModelled):
                raise cause
        if errors and all(e.path is None for e in errors):  # the variables did not coerce: nothing ran
            return Reply(
                400, {"errors": [{"message": e.message, "extensions": {"code": "BAD_USER_INPUT"}} for e in errors]}
            )
        for cause in map(bgql.original, errors):
            if cause is not None and not isinstance(cause, GraphQLError):  # a resolver of this fake broke
                self.internal_errors.append("".join(traceback.format_exception(cause)))
                return Reply(500, {"errors": [{"message": "fake_buffer internal error (see internal_errors)"}]})
        payload: dict[str, Any] = {"data": result.data}
        if errors:
            payload["errors"] = [e.formatted for e in errors]
        if context["lost"] is not None:
            with self._lock:
                self.lost_answers += 1
            self.lost.set()
            if context["lost"] == "drop":
                raise DropConnection
            self.release.wait(30)  # the client times out first; the fake's exit ends the wait
        return Reply(200, payload)

    def _top_level(self, name: str, info: GraphQLResolveInfo, args: dict[str, Any]) -> Any:
        for arg, value in args.items():
            bgql.refuse_unmodelled(value, info.parent_type.fields[name].args[arg].type)
        with self._lock:
            self.operations.append((name, args))
            fault = next((f for f in self.faults if f.operation in (name, "*")), None)
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None and fault.reply is not None:
            info.context["reply"] = fault.reply
            raise bgql.error("FAKE", "answered by a scripted reply")
        if fault is not None and fault.code is not None:
            raise bgql.error(fault.code, fault.message)
        if fault is not None and fault.typed_error is not None:
            return {"__typename": fault.typed_error, "message": fault.message, **fault.extra}
        value = self._resolve(name, args)
        if fault is not None and fault.lost is not None:
            info.context["lost"] = fault.lost
        return value

    # --- resolvers -------------------------------------------------------------------------------
    def _resolve(self, name: str, args: dict[str, Any]) -> Any:
        resolvers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "account": self._account,
            "channels": self._channels,
            "channel": self._channel,
            "posts": self._posts,
            "post": self._post,
            "dailyPostingLimits": self._daily_limits,
            "createPost": self._create_post,
        }
        if name not in resolvers:
            raise model.NotModelled(name)
        with self._lock:
            return resolvers[name](args)

    def _author(self) -> dict[str, Any]:
        return {
            "__typename": "Author",
            "id": "65000000000000000000aaaa",
            "avatar": "",
            "email": "owner@example.com",
            "isDeleted": False,
            "name": "Owner",
        }

    def _account(self, _: dict[str, Any]) -> dict[str, Any]:
        orgs = [
            {
                "__typename": "Organization",
                **org,
                "shouldEnforce2FASetup": False,
                "channelCount": sum(c.organization_id == org["id"] for c in self.channels.values()),
            }
            for org in self.organizations
        ]
        return {
            "__typename": "Account",
            "id": "65000000000000000000aaaa",
            "email": "owner@example.com",
            "backupEmail": None,
            "avatar": "",
            "createdAt": "2025-01-01T00:00:00.000Z",
            "organizations": orgs,
            "timezone": "America/Phoenix",
            "name": "Owner",
            "preferences": None,
            "connectedApps": None,
        }

    def _org(self, org_id: Any) -> str:
        if org_id not in {o["id"] for o in self.organizations}:
            raise bgql.error("FORBIDDEN", "You do not have access to this organization")
        return str(org_id)

    def _channels(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        given = args["input"]
        org = self._org(given.get("organizationId"))
        locked = (given.get("filter") or {}).get("isLocked")
        return [
            c.graphql()
            for c in self.channels.values()
            if c.organization_id == org and (locked is None or c.is_locked == locked)
        ]

    def _channel(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels.get(args["input"].get("id"))
        if channel is None:
            raise bgql.error("NOT_FOUND", "Channel not found")
        return channel.graphql()

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        post = self.posts.get(args["input"].get("id"))
        if post is None:
            raise bgql.error("NOT_FOUND", "Post not found")
        return post.graphql(self._author())

    def _posts(self, args: dict[str, Any]) -> dict[str, Any]:
        given = args["input"]
        org = self._org(given.get("organizationId"))
        wanted = given.get("filter") or {}
        if wanted.get("tags") or wanted.get("tagIds"):
            raise model.NotModelled("filtering posts by tags")
        for moment in [
            wanted.get("startDate"),
            wanted.get("endDate"),
            *(wanted.get("createdAt") or {}).values(),
            *(wanted.get("dueAt") or {}).values(),
        ]:
            if moment is not None:
                bgql.as_time(moment)
        posts = sorted(
            (p for p in self.posts.values() if p.channel.organization_id == org and model.matches(p, wanted)),
            key=lambda p: p.id,
            reverse=True,
        )
        for order in reversed(given.get("sort") or [{"field": "createdAt", "direction": "desc"}]):
            key = {"createdAt": "created_at", "dueAt": "due_at"}[order["field"]]
            dated = sorted(
                (p for p in posts if getattr(p, key) is not None),
                key=lambda p, k=key: getattr(p, k),
                reverse=order["direction"] == "desc",
            )
            posts = dated + [p for p in posts if getattr(p, key) is None]  # undated last, either way
        first = args.get("first")
        first = DEFAULT_PAGE_SIZE if first is None else first
        if first < 0:
            raise bgql.error("BAD_USER_INPUT", "first must be a non-negative integer")
        start = 0
        if args.get("after"):
            ids = [p.id for p in posts]
            after = model.decode_cursor(args["after"])
            if after not in ids:
                raise model.NotModelled("an `after` cursor that is not in the current result set")
            start = ids.index(after) + 1
        page = posts[start : start + first]
        edges = [
            {"__typename": "PostsEdge", "cursor": model.cursor(p.id), "node": p.graphql(self._author())} for p in page
        ]
        return {
            "__typename": "PostsResults",
            "edges": edges,
            "pageInfo": {
                "__typename": "PaginationPageInfo",
                "hasPreviousPage": False,
                "hasNextPage": start + first < len(posts),
                "startCursor": edges[0]["cursor"] if edges else None,
                "endCursor": edges[-1]["cursor"] if edges else None,
            },
        }

    def _daily_limits(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        given = args["input"]
        out = []
        for channel_id in given.get("channelIds") or []:
            channel = self.channels.get(channel_id)
            if channel is None:
                raise bgql.error("NOT_FOUND", "Channel not found")
            zone = ZoneInfo(channel.timezone)
            day = (bgql.as_time(given["date"]) if given.get("date") else self.clock()).astimezone(zone).date()
            same_day = [
                p
                for p in self.posts.values()
                if p.channel is channel and p.due_at is not None and p.due_at.astimezone(zone).date() == day
            ]
            sent = sum(p.status == "sent" for p in same_day)
            scheduled = sum(p.status == "scheduled" for p in same_day)
            out.append(
                {
                    "__typename": "DailyPostingLimitStatus",
                    "channelId": channel.id,
                    "sent": sent,
                    "scheduled": scheduled,
                    "limit": channel.daily_limit,
                    "isAtLimit": channel.daily_limit is not None and sent + scheduled >= channel.daily_limit,
                }
            )
        return out

    def _create_post(self, args: dict[str, Any]) -> dict[str, Any]:
        given = args["input"]
        if any(len([v for v in entry.values() if v is not None]) != 1 for entry in given["assets"]):
            raise bgql.error("BAD_USER_INPUT", "Each AssetInput gives exactly one of image, video, document or link.")
        channel = self.channels.get(given["channelId"])
        if channel is None or channel.organization_id not in {o["id"] for o in self.organizations}:
            return {"__typename": "NotFoundError", "message": "Channel not found"}
        if channel.is_locked or channel.is_disconnected:
            raise model.NotModelled("posting to a locked or disconnected channel")
        assets = given.get("assets") or []
        if assets and any((v or {}).get("linkAttachment") for v in (given.get("metadata") or {}).values()):
            return {
                "__typename": "InvalidInputError",
                "message": "metadata linkAttachment cannot be combined with assets",
            }
        if not (given.get("text") or "").strip() and not assets:
            return {"__typename": "InvalidInputError", "message": "Text is required"}
        mode, now = given["mode"], self.clock()
        due = bgql.as_time(given["dueAt"]) if given.get("dueAt") else None
        if mode == "customScheduled" and due is None:
            return {"__typename": "InvalidInputError", "message": "dueAt is required when mode is customScheduled"}
        if given.get("saveToDraft") or given.get("needsApproval"):
            status = "needs_approval" if given.get("needsApproval") else "draft"
            due = due if mode == "customScheduled" else None
        elif mode == "shareNow":
            status, due = "sending", now
        else:
            status = "scheduled"
            if mode in ("addToQueue", "shareNext"):
                queued = [
                    p.due_at
                    for p in self.posts.values()
                    if p.channel is channel
                    and p.status == "scheduled"
                    and p.due_at is not None
                    and mode == "addToQueue"
                ]
                due = (max([now, *queued]) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        post = model.Post(
            self.new_id(),
            channel,
            given.get("text") or "",
            status,
            mode,
            given["schedulingType"],
            now,
            due,
            assets=[self._asset(a) for a in assets if "link" not in a],
            link_url=next((a["link"]["url"] for a in assets if a.get("link")), None),
        )
        self.posts[post.id] = post
        return {"__typename": "PostActionSuccess", "post": post.graphql(self._author())}

    def _asset(self, entry: dict[str, Any]) -> dict[str, Any]:
        kind, value = next((k, v) for k, v in entry.items() if v is not None)
        typename = {"image": "ImageAsset", "video": "VideoAsset", "document": "DocumentAsset"}[kind]
        mime = mimetypes.guess_type(urlsplit(value["url"]).path)[0] or f"{kind}/*"
        return {
            "__typename": typename,
            "id": self.new_id(),
            "type": kind,
            "mimeType": mime,
            "source": value["url"],
            "thumbnail": value.get("thumbnailUrl") or value["url"],
        }
