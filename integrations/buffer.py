"""Buffer's GraphQL API (`POST https://api.buffer.com`, Bearer): channels, createPost, and finding a
post whose answer was lost. The legacy REST API is closed to new apps and retired on 2027-02-01.

Facts and sources: docs/vendors/buffer.md (Buffer's guides https://developers.buffer.com/guides/,
the reference https://developers.buffer.com/reference.html).

- Credentials: a personal API key (`ApiKey`), or an OAuth grant (`buffer_oauth.OAuthTokens`, which
  refreshes exactly once across processes). Both are `AccessTokens`.
- Errors: Buffer answers most of them at HTTP 200 - typed `MutationError`s in `data` and codes in
  `errors[].extensions.code` - and a few as HTTP 401 / 429. `_error` maps every one into
  integrations.errors: refusals are `BufferRefused` (permanent), `UNEXPECTED` and 5xx are transient,
  429 / `RATE_LIMIT_EXCEEDED` are `RateLimited` with the window's reset, 401 / `UNAUTHORIZED` is
  `ReconnectNeeded` (and an OAuth grant is marked so in the store).
- Rate limits are per client over rolling windows (Free: 100 per 15 min, 100 per 24 h): counted in the
  `RateSlots` the app hands in, so every process shares them; a wait longer than
  MAX_IN_PROCESS_WAIT goes back to the caller as `RateLimited`.
- createPost is not idempotent and Buffer has no idempotency key. A createPost is therefore never
  repeated in-process after a failure that may have reached Buffer (a timeout, a dropped connection, a
  5xx, UNEXPECTED): it raises `PostMaybeMade`, asking to be tried again after
  `post_recheck_seconds`, and the caller first looks the post up (`find_post`: same channel, made via
  the API since the attempt, same text, time and image) before posting again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr

from integrations.buffer_models import Channel, Post, PostRequest, iso_utc, same_text
from integrations.buffer_oauth import ReconnectNeeded
from integrations.errors import NotConfigured, PermanentError, RateLimited, TransientError
from integrations.rate_limit import RateSlots
from integrations.resilience import CircuitBreaker, call_with_retries, parse_retry_after

SYSTEM = "buffer"
DEFAULT_API_URL = "https://api.buffer.com"
MAX_IN_PROCESS_WAIT = 30.0
DEFAULT_WINDOW = 900.0  # Buffer's shortest window: the wait when a 429 names none
LOOKUP_PAGE = 50
LOOKUP_PAGES = 4

_CHANNEL_FIELDS = """id name displayName service type timezone isLocked isDisconnected isQueuePaused
  metadata { ... on MastodonMetadata { maxCharacters } }"""
_POST_FIELDS = "id text status via shareMode createdAt dueAt channelId externalLink assets { source }"
ORGANIZATIONS = "query Organizations { account { organizations { id name } } }"
CHANNELS = f"""query Channels($input: ChannelsInput!) {{ channels(input: $input) {{ {_CHANNEL_FIELDS} }} }}"""
POSTS = f"""query Posts($input: PostsInput!, $first: Int, $after: String) {{
  posts(input: $input, first: $first, after: $after) {{
    edges {{ node {{ {_POST_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
POST = f"query Post($input: PostInput!) {{ post(input: $input) {{ {_POST_FIELDS} }} }}"
CREATE_POST = f"""mutation CreatePost($input: CreatePostInput!) {{
  createPost(input: $input) {{
    __typename
    ... on PostActionSuccess {{ post {{ {_POST_FIELDS} }} }}
    ... on MutationError {{ message }}
  }} }}"""


class BufferConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_url: str = DEFAULT_API_URL
    organization_id: str | None = None  # needed only when the account sees several organizations
    timeout_seconds: float = Field(15.0, gt=0)
    attempts: PositiveInt = 3
    requests_per_15_minutes: PositiveInt = 100  # every plan
    requests_per_day: PositiveInt = 100  # the Free plan; Essentials 250, Team 500
    # a createPost that may have reached Buffer is looked up after this long, never re-sent at once
    post_recheck_seconds: float = Field(60.0, gt=MAX_IN_PROCESS_WAIT)


class AccessTokens(Protocol):
    def access_token(self) -> str: ...

    def rejected(self, reason: str) -> None:
        """Buffer answered 401 to the token: the credential is dead."""
        ...


class ApiKey:
    """A personal API key: it acts for the account that made it, and does not expire."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def access_token(self) -> str:
        return self._key.get_secret_value()

    def rejected(self, reason: str) -> None:
        """Nothing to store: the key lives in the settings, and the error says to replace it."""


class BufferRefused(PermanentError):
    """Buffer refused the request (a typed MutationError, FORBIDDEN, NOT_FOUND, invalid GraphQL)."""

    code = "buffer_refused"


class PostMaybeMade(TransientError):
    """createPost failed after it may have reached Buffer: look the post up before posting again."""

    code = "buffer_post_uncertain"


class BufferLimiter:
    """Buffer's per-client windows, counted in shared slots: the day's first (the scarcer), then the
    15 minutes'. A fixed window is not Buffer's rolling one; its 429 covers the rest."""

    def __init__(self, slots: RateSlots, config: BufferConfig, sleep: Callable[[float], None]) -> None:
        self._slots = slots
        self._windows = (
            ("buffer-24h", "24-hour", config.requests_per_day, 86_400.0),
            ("buffer-15m", "15-minute", config.requests_per_15_minutes, 900.0),
        )
        self._sleep = sleep

    def acquire(self) -> None:
        for bucket, label, limit, window in self._windows:
            while not (slot := self._slots.take(bucket, limit=limit, window_seconds=window)).granted:
                if slot.retry_after > MAX_IN_PROCESS_WAIT:
                    raise RateLimited(
                        f"Buffer's {label} allowance ({limit} calls) is used up",
                        system=SYSTEM,
                        retry_after=slot.retry_after,
                    )
                self._sleep(slot.retry_after)


class BufferClient:
    def __init__(
        self,
        config: BufferConfig,
        *,
        tokens: AccessTokens,
        slots: RateSlots,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self.tokens = tokens
        self.limiter = BufferLimiter(slots, config, sleep)
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        self._sleep = sleep
        self._organization_id = config.organization_id
        self._http = httpx.Client(timeout=config.timeout_seconds, transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    # --- reads ------------------------------------------------------------------------------
    def organization_id(self) -> str:
        if self._organization_id is None:
            data = self._graphql("read organizations", ORGANIZATIONS, {})
            organizations = (data.get("account") or {}).get("organizations") or []
            if len(organizations) != 1:
                names = ", ".join(f"{o.get('name')} ({o.get('id')})" for o in organizations) or "none"
                raise NotConfigured(
                    f"the account sees {len(organizations)} organizations ({names}): set BUFFER_ORGANIZATION_ID",
                    system=SYSTEM,
                )
            self._organization_id = str(organizations[0]["id"])
        return self._organization_id

    def channels(self) -> list[Channel]:
        """Every channel of the organization, locked and disconnected ones included (shown, not usable)."""
        data = self._graphql("list channels", CHANNELS, {"input": {"organizationId": self.organization_id()}})
        return [Channel.from_api(node) for node in data.get("channels") or []]

    def post(self, post_id: str) -> Post:
        return Post.from_api(self._graphql("read post", POST, {"input": {"id": post_id}})["post"])

    def find_post(self, request: PostRequest, *, attempted_at: datetime) -> Post | None:
        """The post an earlier createPost of `request` made, if Buffer has it. Buffer keeps no marker
        of ours, so: the channel's posts made since a minute before the attempt (clocks differ), made
        via the API, with the same text (URLs masked: link shortening rewrites them), the same time
        when one was asked, and the same image."""
        since = attempted_at - timedelta(minutes=1)
        variables: dict[str, Any] = {
            "input": {
                "organizationId": self.organization_id(),
                "filter": {"channelIds": [request.channel_id], "createdAt": {"start": iso_utc(since)}},
                "sort": [{"field": "createdAt", "direction": "desc"}],
            },
            "first": LOOKUP_PAGE,
        }
        for _ in range(LOOKUP_PAGES):
            page = self._graphql("look up post", POSTS, variables)["posts"]
            for edge in page.get("edges") or []:
                post = Post.from_api(edge["node"])
                if _matches(post, request):
                    return post
            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return None
            variables = {**variables, "after": info.get("endCursor")}
        raise TransientError(
            f"more than {LOOKUP_PAGE * LOOKUP_PAGES} posts on the channel since the attempt", system=SYSTEM
        )

    # --- writes -----------------------------------------------------------------------------
    def create_post(self, request: PostRequest) -> Post:
        """One createPost; never repeated here after a failure that may have reached Buffer."""
        data = self._graphql("create post", CREATE_POST, request.variables(), write_once=True)
        payload = data.get("createPost") or {}
        typename = payload.get("__typename")
        if typename == "PostActionSuccess":
            return Post.from_api(payload["post"])
        message = f"{typename}: {payload.get('message') or 'no message'}"
        if typename == "UnexpectedError":  # Buffer's own failure: it may or may not have made the post
            raise PostMaybeMade(message, system=SYSTEM, retry_after=self.config.post_recheck_seconds)
        raise BufferRefused(message, system=SYSTEM, details={"typename": typename, **_extra(payload)})

    # --- plumbing ---------------------------------------------------------------------------
    def _graphql(self, what: str, query: str, variables: dict[str, Any], *, write_once: bool = False) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            self.limiter.acquire()
            token = self.tokens.access_token()
            try:
                response = self._http.post(
                    self.config.api_url,
                    json={"query": query, "variables": variables},
                    headers={"Authorization": f"Bearer {token}", "User-Agent": "opsdesk"},
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing went out
                raise TransientError(f"{what}: connection failed ({type(exc).__name__})", system=SYSTEM) from exc
            except httpx.TransportError as exc:  # it went out, and no answer came
                raise self._maybe(what, f"no answer ({type(exc).__name__})", write_once) from exc
            return self._data(what, response, write_once)

        return call_with_retries(
            once,
            breaker=self.breaker,
            attempts=self.config.attempts,
            max_retry_after=MAX_IN_PROCESS_WAIT,
            sleep=self._sleep,
        )

    def _maybe(self, what: str, why: str, write_once: bool) -> TransientError:
        if write_once:
            return PostMaybeMade(f"{what}: {why}", system=SYSTEM, retry_after=self.config.post_recheck_seconds)
        return TransientError(f"{what}: {why}", system=SYSTEM)

    def _data(self, what: str, response: httpx.Response, write_once: bool) -> dict[str, Any]:
        status = response.status_code
        body = _json(response)
        found = body.get("errors")
        errors: list[Any] = found if isinstance(found, list) else []
        first: dict[str, Any] = errors[0] if errors and isinstance(errors[0], dict) else {}
        given = first.get("extensions")
        extensions: dict[str, Any] = given if isinstance(given, dict) else {}
        code = str(extensions.get("code") or "")
        text = f"{what}: {first.get('message') or f'HTTP {status}'}"[:300]
        if status == 401 or code in ("UNAUTHORIZED", "UNAUTHENTICATED"):
            self.tokens.rejected(text)
            raise ReconnectNeeded(f"Buffer refused the credentials ({text})", system=SYSTEM)
        if status == 429 or code == "RATE_LIMIT_EXCEEDED":
            raise RateLimited(text, system=SYSTEM, retry_after=_reset(response, extensions, self._clock()))
        if status >= 500 or code == "UNEXPECTED":
            raise self._maybe(what, f"HTTP {status} {code}".strip(), write_once)
        if status != 200 or errors:
            raise BufferRefused(text, system=SYSTEM, details={"status": status, "code": code or None})
        data = body.get("data")
        if not isinstance(data, dict):
            raise self._maybe(what, "an answer without data", write_once)
        return data


def _matches(post: Post, request: PostRequest) -> bool:
    if post.via not in (None, "api") or post.channel_id != request.channel_id:
        return False
    if not same_text(request.text, post.text):
        return False
    if request.due_at is not None and (post.due_at is None or abs((post.due_at - request.due_at).total_seconds()) > 1):
        return False
    return request.image_url is None or request.image_url in post.image_urls


def _reset(response: httpx.Response, extensions: dict[str, Any], now: datetime) -> float:
    """Seconds until the window resets: the body's retryAfter (Buffer's documented place), else a
    Retry-After header, else RateLimit-Reset (an ISO time), else the shortest window."""
    retry_after = extensions.get("retryAfter")
    if isinstance(retry_after, int | float) and retry_after >= 0:
        return float(retry_after)
    header = parse_retry_after(response.headers.get("Retry-After"))
    if header is not None:
        return header
    reset = response.headers.get("RateLimit-Reset")
    if reset:
        try:
            return max((datetime.fromisoformat(reset.replace("Z", "+00:00")) - now).total_seconds(), 1.0)
        except ValueError:
            pass
    return DEFAULT_WINDOW


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _extra(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: payload[key] for key in ("link", "code") if payload.get(key) is not None}
