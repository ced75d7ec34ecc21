"""The data of the fake Buffer (tests/fake_buffer.py): channels and posts as Buffer's GraphQL
types render them, the errors a request or a field can end in, and the input checks GraphQL
coercion makes before any resolver runs."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fake_buffer_schema import CREATE_POST_INPUT, SCHEDULING_TYPES, SHARE_MODES

ORG_ID = "64f000000000000000000001"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FieldError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Channel:
    id: str
    service: str
    name: str
    type: str = "profile"
    organization_id: str = ORG_ID
    timezone: str = "America/Phoenix"
    is_locked: bool = False
    is_disconnected: bool = False
    is_queue_paused: bool = False
    metadata: dict[str, Any] | None = None
    daily_limit: int | None = None
    created_at: datetime = datetime(2026, 1, 5, tzinfo=UTC)

    def graphql(self) -> dict[str, Any]:
        return {
            "__typename": "Channel", "id": self.id, "allowedActions": [], "descriptor":
            f"{self.service.title()} {self.type.title()}", "avatar": f"https://static.buffer.example/{self.id}.png",
            "displayName": self.name, "externalLink": None, "hasActiveMemberDevice": False,
            "isDisconnected": self.is_disconnected, "isLocked": self.is_locked, "isNew": False,
            "isQueuePaused": self.is_queue_paused, "metadata": self.metadata, "name": self.name,
            "organizationId": self.organization_id, "products": ["publish"], "scopes": [], "service": self.service,
            "serviceId": self.id[-8:], "showTrendingTopicSuggestions": True, "timezone": self.timezone,
            "type": self.type, "linkShortening": {"__typename": "ChannelLinkShortening", "isEnabled": False,
                                                  "config": None},
            "postingGoal": None, "weeklyPostingLimit": None,
            "createdAt": iso(self.created_at), "updatedAt": iso(self.created_at)}


@dataclass
class Post:
    id: str
    channel: Channel
    text: str
    status: str
    mode: str
    scheduling_type: str
    created_at: datetime
    due_at: datetime | None
    assets: list[dict[str, Any]] = field(default_factory=list)
    link_url: str | None = None  # a `link` asset: kept for assertions, Buffer returns no Asset for it
    via: str = "api"
    sent_at: datetime | None = None
    external_link: str | None = None

    def graphql(self, author: dict[str, Any]) -> dict[str, Any]:
        return {
            "__typename": "Post", "id": self.id, "allowedActions": [], "assets": self.assets, "author": author,
            "channel": self.channel.graphql(), "channelId": self.channel.id, "channelService": self.channel.service,
            "dueAt": iso(self.due_at) if self.due_at else None, "error": None, "externalLink": self.external_link,
            "ideaId": None, "isCustomScheduled": self.mode == "customScheduled", "metadata": None, "metrics": None,
            "metricsUpdatedAt": None, "notes": [], "notificationStatus": None, "schedulingType": self.scheduling_type,
            "sentAt": iso(self.sent_at) if self.sent_at else None, "sharedNow": self.mode == "shareNow",
            "shareMode": self.mode, "status": self.status, "tags": [], "text": self.text, "via": self.via,
            "createdAt": iso(self.created_at), "updatedAt": iso(self.created_at)}


def cursor(post_id: str) -> str:
    return base64.urlsafe_b64encode(f"post:{post_id}".encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("post:")
    except ValueError:
        return ""


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RequestError(400, "BAD_USER_INPUT", f"DateTime cannot represent an invalid date-time: {text}") from exc
    if moment.tzinfo is None:
        raise RequestError(400, "BAD_USER_INPUT", f"DateTime needs a time zone offset: {text}")
    return moment


def _within(moment: datetime | None, comparator: dict[str, Any] | None) -> bool:
    if not comparator:
        return True
    if moment is None:
        return False
    start, end = comparator.get("start"), comparator.get("end")
    return (start is None or moment >= parse_time(start)) and (end is None or moment <= parse_time(end))


def matches(post: Post, wanted: dict[str, Any]) -> bool:
    if wanted.get("channelIds") is not None and post.channel.id not in wanted["channelIds"]:
        return False
    if wanted.get("status") and post.status not in wanted["status"]:
        return False
    presence = wanted.get("dueAtPresence")
    if presence is not None and (post.due_at is not None) != (presence == "present"):
        return False
    start, end = wanted.get("startDate"), wanted.get("endDate")
    dates = [d for d in (post.created_at, post.due_at) if d is not None]
    if start is not None and not any(d >= parse_time(start) for d in dates):
        return False
    if end is not None and not any(d <= parse_time(end) for d in dates):
        return False
    return _within(post.created_at, wanted.get("createdAt")) and _within(post.due_at, wanted.get("dueAt"))


def input_problem(given: dict[str, Any]) -> str | None:
    """What GraphQL input coercion refuses before any resolver runs (HTTP 400, BAD_USER_INPUT)."""
    unknown = sorted(set(given) - CREATE_POST_INPUT)
    if unknown:
        return f'Field "{unknown[0]}" is not defined by type "CreatePostInput".'
    for name in ("channelId", "schedulingType", "mode"):
        if given.get(name) is None:
            return f'Field "{name}" of required type was not provided.'
    if given["mode"] not in SHARE_MODES:
        return f'Value "{given["mode"]}" does not exist in "ShareMode" enum.'
    if given["schedulingType"] not in SCHEDULING_TYPES:
        return f'Value "{given["schedulingType"]}" does not exist in "SchedulingType" enum.'
    for entry in given.get("assets") or []:
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in ("image", "video", "document",
                                                                                          "link"):
            return 'Each "AssetInput" must specify exactly one of image, video, document or link.'
        if not isinstance(next(iter(entry.values())), dict) or "url" not in next(iter(entry.values())):
            return 'Field "url" of required type "String!" was not provided.'
    if given.get("dueAt") is not None:
        parse_time(given["dueAt"])
    return None
