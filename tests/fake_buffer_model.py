"""The data of the fake Buffer (tests/fake_buffer.py): channels and posts as Buffer's GraphQL
types render them, Buffer's DateTime scalar, opaque cursors, and the posts query's filters."""

from __future__ import annotations

import base64
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ORG_ID = "64f000000000000000000001"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NotModelled(Exception):  # the fake answers HTTP 501, never a guess
    """Buffer has it; this fake does not answer it (a test needs a richer fake, not a pass)."""


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
            "__typename": "Channel",
            "id": self.id,
            "allowedActions": [],
            "descriptor": f"{self.service.title()} {self.type.title()}",
            "avatar": f"https://static.buffer.example/{self.id}.png",
            "displayName": self.name,
            "externalLink": None,
            "hasActiveMemberDevice": False,
            "isDisconnected": self.is_disconnected,
            "isLocked": self.is_locked,
            "isNew": False,
            "isQueuePaused": self.is_queue_paused,
            "metadata": self.metadata,
            "name": self.name,
            "organizationId": self.organization_id,
            "products": ["publish"],
            "scopes": [],
            "service": self.service,
            "serviceId": self.id[-8:],
            "showTrendingTopicSuggestions": True,
            "timezone": self.timezone,
            "type": self.type,
            "linkShortening": {"__typename": "ChannelLinkShortening", "isEnabled": False, "config": None},
            "postingGoal": None,
            "weeklyPostingLimit": None,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.created_at),
        }


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
            "__typename": "Post",
            "id": self.id,
            "allowedActions": [],
            "assets": self.assets,
            "author": author,
            "channel": self.channel.graphql(),
            "channelId": self.channel.id,
            "channelService": self.channel.service,
            "dueAt": iso(self.due_at) if self.due_at else None,
            "error": None,
            "externalLink": self.external_link,
            "ideaId": None,
            "isCustomScheduled": self.mode == "customScheduled",
            "metadata": None,
            "metrics": None,
            "metricsUpdatedAt": None,
            "notes": [],
            "notificationStatus": None,
            "schedulingType": self.scheduling_type,
            "sentAt": iso(self.sent_at) if self.sent_at else None,
            "sharedNow": self.mode == "shareNow",
            "shareMode": self.mode,
            "status": self.status,
            "tags": [],
            "text": self.text,
            "via": self.via,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.created_at),
        }


def cursor(post_id: str) -> str:
    return base64.urlsafe_b64encode(f"post:{post_id}".encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("post:")
    except ValueError:
        return ""


def parse_time(text: str) -> datetime:
    """Buffer's DateTime: ISO 8601; the fake also insists on an offset (a naive time is ambiguous)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"DateTime cannot represent an invalid date-time string {text!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"DateTime needs a time zone offset: {text!r}")
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


class RateWindows:
    """Buffer's rolling windows, counted per client (an API key or an OAuth client): a request is
    refused while any window is full; the headers describe the window closest to full."""

    def __init__(self) -> None:
        self._hits: dict[str, list[datetime]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, now: datetime, limits: list[tuple[str, int, int]]) -> tuple[bool, dict[str, str], int]:
        with self._lock:
            hits = self._hits.setdefault(client, [])
            states = []
            for _, limit, seconds in limits:
                inside = [h for h in hits if h > now - timedelta(seconds=seconds)]
                states.append((limit, seconds, inside))
            full = [
                (min(inside) + timedelta(seconds=seconds) - now).total_seconds()
                for limit, seconds, inside in states
                if len(inside) >= limit
            ]
            if full:
                wait = math.ceil(max(full))
                return False, self._headers(states, now, extra=0), wait
            hits.append(now)
            return True, self._headers(states, now, extra=1), 0

    @staticmethod
    def _headers(states: list[tuple[int, int, list[datetime]]], now: datetime, extra: int) -> dict[str, str]:
        limit, seconds, inside = min(states, key=lambda s: s[0] - len(s[2]))  # the tightest window
        oldest = min(inside, default=now)
        return {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(max(limit - len(inside) - extra, 0)),
            "RateLimit-Reset": iso(oldest + timedelta(seconds=seconds)),
        }
