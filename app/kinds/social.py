"""The `social.post` action kind: one post to one Buffer channel.

- Public by nature: at least MEDIUM. Posting `now` cannot be taken back (a queued or timed post can
  still be deleted in Buffer before it goes out), so it is also irreversible: HIGH.
- The payload names the channel as `opsdesk buffer channels` lists it (id, network, name, and a
  Mastodon server's own limit), so the text is checked against the network's limit when it is
  drafted and again on every edit of the review page (the payload model's validator); the handler
  checks once more against the channel as Buffer lists it when the post goes out.
- `when`: Buffer's queue, now, or `at` - a time read in CRON_TIMEZONE when it carries no offset.
- No double post: Buffer has no idempotency key. The attempt is recorded before the call
  (`mark_dispatched`); a createPost that may have reached Buffer notes an uncertain dispatch and is
  retried later, and every later attempt first looks the post up (`BufferClient.find_post`). When
  the lookup itself fails, the action is `unknown` for a person, never posted a second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.models import Impact
from app.core.settings import Settings
from app.kinds.base import ActionKind
from app.kinds.context import HandlerContext
from integrations.buffer import SYSTEM, BufferClient, PostMaybeMade
from integrations.buffer_models import TEXT_LIMITS, Channel, Mode, Post, PostRequest
from integrations.errors import IntegrationError, OutcomeUnknown, PermanentError

HttpsUrl = Annotated[str, Field(max_length=2000, pattern=r"^https://[^\s/]+\.[^\s]+$")]
When = Literal["queue", "now", "at"]
_MODES: dict[str, Mode] = {"queue": "addToQueue", "now": "shareNow", "at": "customScheduled"}


class SocialPostPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    network: str = Field(min_length=1, max_length=40)  # Buffer's `service` of the channel
    channel_name: str = Field("", max_length=200)
    max_characters: int | None = Field(None, ge=1, le=100_000)  # a Mastodon server's own limit
    text: str = Field(min_length=1, max_length=25_000)
    link: HttpsUrl | None = None  # put at the end of the text, once
    image_url: HttpsUrl | None = None  # public and direct: Buffer fetches it when the post goes out
    when: When = "queue"
    at: datetime | None = None  # `when: at`; without an offset it is read in CRON_TIMEZONE

    @field_validator("link", "image_url", "at", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # the review page posts an emptied box as "": no link, no image, no time
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _fits(self) -> SocialPostPayload:
        if (self.when == "at") != (self.at is not None):
            raise ValueError("`at` is given exactly when `when` is 'at'")
        problem = self.channel().text_problem(self.full_text())
        if problem is not None:
            raise ValueError(problem)
        return self

    def channel(self) -> Channel:
        return Channel(
            id=self.channel_id, name=self.channel_name, service=self.network, max_characters=self.max_characters
        )

    def full_text(self) -> str:
        if self.link is None or self.link in self.text:
            return self.text
        return f"{self.text.rstrip()}\n\n{self.link}"

    def request(self, zone: ZoneInfo) -> PostRequest:
        due = None
        if self.at is not None:
            due = self.at if self.at.tzinfo is not None else self.at.replace(tzinfo=zone)
        return PostRequest(
            channel_id=self.channel_id,
            text=self.full_text(),
            image_url=self.image_url,
            mode=_MODES[self.when],
            due_at=due,
        )


def social_post_impact(payload: Mapping[str, Any], impact: Impact) -> Impact:
    if payload.get("when") == "now":
        return impact.model_copy(update={"reversible": False})
    return impact


def post_to_buffer(ctx: HandlerContext) -> dict[str, Any]:
    payload = SocialPostPayload.model_validate(ctx.action.requested_action)
    request = payload.request(ctx.settings.time_zone)
    buffer = ctx.clients.get(Settings.buffer_client)
    ctx.heartbeat()
    since = _earlier_attempt(ctx)
    if since is not None:
        found = _look_up(buffer, request, since)
        if found is not None:
            return _result(found, payload, recovered=True)
    _check_channel(payload, buffer.channels())
    if request.due_at is not None and request.due_at <= datetime.now(request.due_at.tzinfo):
        why = f"the time {payload.at} has passed: give a new time, or post to the queue"
        ctx.send_back(payload.model_dump(mode="json"), why)
    ctx.heartbeat()
    ctx.mark_dispatched()
    try:
        post = buffer.create_post(request)
    except PostMaybeMade:
        ctx.note_uncertain()
        raise
    return _result(post, payload, recovered=False)


def _earlier_attempt(ctx: HandlerContext) -> str | datetime | None:
    """When an earlier attempt may have posted: the first uncertain one, or, on any later attempt
    (a person settled an `unknown` as retry, which clears that mark), since the approval."""
    uncertain: str | None = ctx.uncertain()["uncertain_since"]
    if uncertain is not None:
        return uncertain
    if ctx.action.attempts > 1:
        return ctx.action.decided_at or ctx.action.requested_at
    return None


def _look_up(buffer: BufferClient, request: PostRequest, since: str | datetime) -> Post | None:
    attempted = since if isinstance(since, datetime) else datetime.fromisoformat(since)
    try:
        return buffer.find_post(request, attempted_at=attempted)
    except IntegrationError as exc:
        raise OutcomeUnknown(
            f"an attempt at {attempted.isoformat()} may have posted it, and Buffer's posts could not be "
            f"searched ({exc.message}): check the channel in Buffer, then settle this action",
            system=SYSTEM,
        ) from exc


def _check_channel(payload: SocialPostPayload, channels: list[Channel]) -> None:
    channel = next((c for c in channels if c.id == payload.channel_id), None)
    if channel is None:
        raise PermanentError(f"channel {payload.channel_id} is not in Buffer any more", system=SYSTEM)
    if not channel.usable:
        state = "locked" if channel.is_locked else "disconnected"
        raise PermanentError(f"{channel.label} is {state} in Buffer: it takes no posts", system=SYSTEM)
    if channel.service != payload.network:
        raise PermanentError(f"channel {channel.id} is {channel.network} now, not {payload.network}", system=SYSTEM)
    problem = channel.text_problem(payload.full_text())
    if problem is not None:  # the channel's limit as Buffer lists it now (a Mastodon server lowered its own)
        raise PermanentError(f"{channel.label}: {problem}", system=SYSTEM)


def _result(post: Post, payload: SocialPostPayload, *, recovered: bool) -> dict[str, Any]:
    return {
        "post_id": post.id,
        "status": post.status,
        "channel_id": payload.channel_id,
        "network": payload.network,
        "due_at": post.due_at.isoformat() if post.due_at else None,
        # True: an earlier attempt had made it, and its answer was lost
        "found_after_lost_answer": recovered,
    }


SOCIAL_KINDS: tuple[ActionKind, ...] = (
    ActionKind(
        name="social.post",
        description=(
            "Post to a Buffer channel (queue, now, or a time in CRON_TIMEZONE); text within the network's "
            f"limit ({', '.join(f'{k} {v}' for k, v in TEXT_LIMITS.items())})"
        ),
        payload_model=SocialPostPayload,
        handler=post_to_buffer,
        editable=frozenset({"text", "link", "image_url", "when", "at"}),
        always_public=True,
        impact_for=social_post_impact,
    ),
)
