"""Discord webhooks: post a message and get its id back, edit it later.

Every payload leaves through `render`, which is where Discord's rules are enforced whatever the
caller built: the length limits, text that can neither ping anyone nor link anywhere (every text
goes through `discord_text.fit`), `allowed_mentions` locked to `{"parse": []}`, and the one role
mention opsdesk adds itself. Only link buttons carry URLs: Discord's unfurler fetches URLs found in
message content, and a live link in text is a phishing hook (`discord_text` says how text is made
inert and literal).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from integrations.discord_text import fit, utf16_len
from integrations.errors import InvalidRequest, OutcomeUnknown, PermanentError, RateLimited, TransientError
from integrations.resilience import CircuitBreaker, call_with_retries, parse_retry_after

SYSTEM = "discord"

# FACTS.md 3.2, plus the button limits of Discord's component reference.
CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
BUTTON_LABEL_MAX = 80
BUTTON_URL_MAX = 512
BUTTONS_PER_ROW = 5

EMPTY_FIELD = "\u2014"  # Discord refuses empty field names and values

# Longest wait spent in this process (a Retry-After, a dry rate-limit bucket); a longer one goes
# back to the outbox, which reschedules in the database instead of holding the sender.
MAX_IN_PROCESS_WAIT = 30.0
IN_PROCESS_ATTEMPTS = 3

# Discord error codes that mean the webhook itself is gone or not ours any more.
UNKNOWN_WEBHOOK = 10015
UNKNOWN_MESSAGE = 10008

_SNOWFLAKE = re.compile(r"^\d{1,25}$")


def call_budget_seconds(timeout: float) -> float:
    """The longest one `execute` or `edit` can take: every attempt timing out, a wait before each
    retry and one for a dry rate-limit bucket."""
    return IN_PROCESS_ATTEMPTS * (timeout + MAX_IN_PROCESS_WAIT)


# --- the message ----------------------------------------------------------------------------------
class EmbedField(BaseModel):
    name: str
    value: str
    inline: bool = False


class Embed(BaseModel):
    title: str | None = None
    description: str | None = None
    color: int | None = Field(None, ge=0, le=0xFFFFFF)
    fields: list[EmbedField] = Field(default_factory=list)
    footer: str | None = None
    timestamp: datetime | None = None
    # an http(s) URL, or attachment://<filename> for a file sent with the message
    image_url: str | None = Field(None, pattern=r"^(https?|attachment)://\S+$")


class Attachment(BaseModel):
    """A file sent with a message (multipart `files[n]`); embeds show it as attachment://<filename>."""

    filename: str = Field(pattern=r"^[\w.-]{1,100}$")
    content: bytes
    content_type: str = "application/octet-stream"


class LinkButton(BaseModel):
    label: str
    url: str


class WebhookMessage(BaseModel):
    """What opsdesk wants to say; `render` turns it into Discord's JSON. Every text may hold
    model-written words: none of it can ping. Only `mention_role_id`, set by opsdesk itself, does."""

    content: str = ""
    embeds: list[Embed] = Field(default_factory=list)
    buttons: list[LinkButton] = Field(default_factory=list)  # none on an edit: the buttons are dropped
    mention_role_id: str | None = Field(None, pattern=r"^\d{1,25}$")


class PostedMessage(BaseModel):
    """The part of Discord's message object (returned with `wait=true`) that opsdesk keeps."""

    id: str = Field(pattern=r"^\d{1,25}$")


def _render_embed(embed: Embed) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if title := fit(embed.title or "", TITLE_MAX):
        out["title"] = title
    if description := fit(embed.description or "", DESCRIPTION_MAX):
        out["description"] = description
    if embed.color is not None:
        out["color"] = embed.color
    if embed.fields:
        out["fields"] = [
            {
                "name": fit(field.name, FIELD_NAME_MAX) or EMPTY_FIELD,
                "value": fit(field.value, FIELD_VALUE_MAX) or EMPTY_FIELD,
                "inline": field.inline,
            }
            for field in embed.fields[:FIELDS_MAX]
        ]
    if footer := fit(embed.footer or "", FOOTER_MAX):
        out["footer"] = {"text": footer}
    if embed.timestamp is not None:
        out["timestamp"] = embed.timestamp.isoformat()
    if embed.image_url is not None:
        out["image"] = {"url": embed.image_url}
    return out


def _text_slots(embeds: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str]]:
    """Every (holder, key) whose text counts towards the 6000-character total."""
    for embed in embeds:
        for key in ("title", "description"):
            if key in embed:
                yield embed, key
        for field in embed.get("fields", []):
            yield field, "name"
            yield field, "value"
        if "footer" in embed:
            yield embed["footer"], "text"


def _fit_total(embeds: list[dict[str, Any]]) -> None:
    """Cap every text at one common length, the largest for which all of them together fit in
    the 6000-character total: short texts stay whole, long ones share what is left."""
    slots = list(_text_slots(embeds))
    lengths = sorted(utf16_len(holder[key]) for holder, key in slots)
    if sum(lengths) <= EMBED_TOTAL_MAX:
        return
    remaining = EMBED_TOTAL_MAX
    cap = 0
    for index, length in enumerate(lengths):
        if length * (len(lengths) - index) > remaining:
            cap = remaining // (len(lengths) - index)
            break
        remaining -= length
    for holder, key in slots:
        if utf16_len(holder[key]) > cap:
            holder[key] = fit(holder[key], cap) or EMPTY_FIELD


def render(message: WebhookMessage) -> dict[str, Any]:
    """Discord's JSON for `message`, within every limit, with mentions locked down."""
    prefix = f"<@&{message.mention_role_id}> " if message.mention_role_id else ""
    embeds = [_render_embed(embed) for embed in message.embeds[:EMBEDS_MAX]]
    _fit_total(embeds)
    buttons = []
    for button in message.buttons[:BUTTONS_PER_ROW]:
        if len(button.url) > BUTTON_URL_MAX or not button.url.startswith(("https://", "http://")):
            raise InvalidRequest(
                f"a Discord link button needs an http(s) URL of at most {BUTTON_URL_MAX} "
                "characters; shorten PUBLIC_BASE_URL",
                system=SYSTEM,
            )
        buttons.append(
            {"type": 2, "style": 5, "label": fit(button.label, BUTTON_LABEL_MAX) or "Open", "url": button.url}
        )
    allowed: dict[str, Any] = {"parse": []}
    if message.mention_role_id:
        allowed["roles"] = [message.mention_role_id]
    return {
        "content": prefix + fit(message.content, CONTENT_MAX - len(prefix)),
        "embeds": embeds,
        "components": [{"type": 1, "components": buttons}] if buttons else [],
        "allowed_mentions": allowed,
    }


# --- the client -----------------------------------------------------------------------------------
def webhook_unusable(exc: PermanentError) -> bool:
    """Discord said the webhook is gone or its token is wrong: no later call can succeed."""
    return bool(exc.details.get("webhook_unusable"))


class DiscordConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_url: SecretStr  # its path carries the webhook's token
    timeout_seconds: float = Field(10.0, gt=0)


class DiscordClient:
    """One webhook. Calls are made one at a time (the outbox sender is a single job), which is what
    lets the client wait out a rate-limit bucket it has seen run dry before sending again."""

    def __init__(
        self,
        config: DiscordConfig,
        *,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = config.webhook_url.get_secret_value().rstrip("/")
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        self._sleep = sleep
        self._clock = clock
        self._not_before = 0.0
        self._http = httpx.Client(
            timeout=config.timeout_seconds,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "opsdesk"},
        )

    def execute(self, message: WebhookMessage, files: Sequence[Attachment] = ()) -> str:
        """Post `message`, with `files` attached (multipart: `payload_json` and `files[n]`);
        returns Discord's message id. A POST that may have reached Discord without its answer
        reaching us (a read timeout, a 5xx) raises OutcomeUnknown and is not retried here."""
        body = render(message)
        if files:
            body["attachments"] = [{"id": index, "filename": file.filename} for index, file in enumerate(files)]
        posted = call_with_retries(
            lambda: self._send("POST", self._url, body, files),
            breaker=self.breaker,
            sleep=self._sleep,
            attempts=IN_PROCESS_ATTEMPTS,
            max_retry_after=MAX_IN_PROCESS_WAIT,
        )
        try:
            return PostedMessage.model_validate(posted).id
        except ValidationError as exc:
            raise OutcomeUnknown("Discord accepted the message but returned no message id", system=SYSTEM) from exc

    def edit(self, message_id: str, message: WebhookMessage) -> None:
        """Replace a posted message's content, embeds and buttons. Idempotent, so every failure
        that can pass is retried."""
        if not _SNOWFLAKE.match(message_id):
            raise InvalidRequest(f"not a Discord message id: {message_id!r}", system=SYSTEM)
        body = render(message)
        call_with_retries(
            lambda: self._send("PATCH", f"{self._url}/messages/{message_id}", body),
            breaker=self.breaker,
            sleep=self._sleep,
            attempts=IN_PROCESS_ATTEMPTS,
            max_retry_after=MAX_IN_PROCESS_WAIT,
        )

    def _send(self, method: str, url: str, body: dict[str, Any], files: Sequence[Attachment] = ()) -> Any:
        wait = self._not_before - self._clock()
        if wait > MAX_IN_PROCESS_WAIT:
            raise RateLimited("Discord's rate-limit bucket is empty", system=SYSTEM, retry_after=wait)
        if wait > 0:  # the bucket ran dry on the last answer: waiting now avoids a 429
            self._sleep(wait)
        params = {"wait": "true", "with_components": "true"} if method == "POST" else {"with_components": "true"}
        try:
            if files:
                response = self._http.request(
                    method,
                    url,
                    params=params,
                    data={"payload_json": json.dumps(body)},
                    files=[
                        (f"files[{index}]", (file.filename, file.content, file.content_type))
                        for index, file in enumerate(files)
                    ],
                )
            else:
                response = self._http.request(method, url, params=params, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # nothing reached Discord: safe to try again
            raise TransientError(f"connection failed ({type(exc).__name__})", system=SYSTEM) from exc
        except httpx.TransportError as exc:
            if method == "POST":
                raise OutcomeUnknown(
                    f"no answer after sending ({type(exc).__name__}); the message may have been posted", system=SYSTEM
                ) from exc
            raise TransientError(f"no answer ({type(exc).__name__})", system=SYSTEM) from exc
        self._note_bucket(response)
        if method == "POST" and response.status_code >= 500:
            # A 5xx can come after the message was posted (a gateway's 502/504 while Discord
            # carried on, a 500 after the write), and a webhook post has no idempotency key: like
            # a lost answer, it goes back to the outbox, whose repost says it may be a copy.
            raise OutcomeUnknown(
                f"HTTP {response.status_code} after sending; the message may have been posted",
                system=SYSTEM,
                details={"status": response.status_code},
            )
        return self._answer(response)

    def _note_bucket(self, response: httpx.Response) -> None:
        if response.headers.get("X-RateLimit-Remaining") == "0":
            reset_after = parse_retry_after(response.headers.get("X-RateLimit-Reset-After"))
            if reset_after:
                self._not_before = self._clock() + reset_after

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        info = data if isinstance(data, dict) else {}
        if status == 429:
            retry_after = info.get("retry_after")
            seconds = (
                float(retry_after)
                if isinstance(retry_after, (int, float))
                else parse_retry_after(response.headers.get("Retry-After"))
            )
            raise RateLimited(
                "429 Too Many Requests",
                system=SYSTEM,
                retry_after=seconds or 1.0,
                details={"global": bool(info.get("global")), "scope": response.headers.get("X-RateLimit-Scope")},
            )
        if status >= 500:
            raise TransientError(f"HTTP {status}", system=SYSTEM)
        if status >= 400:
            code = info.get("code") if isinstance(info.get("code"), int) else None
            unusable = status in (401, 403) or code == UNKNOWN_WEBHOOK
            message = str(info.get("message") or "")[:200]
            raise PermanentError(
                f"HTTP {status} {message}".rstrip(),
                system=SYSTEM,
                details={"status": status, "discord_code": code, "webhook_unusable": unusable},
            )
        return data

    def close(self) -> None:
        self._http.close()
