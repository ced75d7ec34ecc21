"""Buffer's data as opsdesk reads and writes it: channels, posts, what a post asks for, and the text
limits Buffer states per network.

Sources (docs/vendors/buffer.md): the GraphQL reference https://developers.buffer.com/reference.html
for the types, and Buffer's character-limit article https://support.buffer.com/article/588 for the
limits. Where Buffer states no limit (Google Business Profile) nothing is checked here; Buffer does not
document what createPost does with over-long text, so the text is checked before it is sent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Service = Literal[
    "instagram",
    "facebook",
    "twitter",
    "linkedin",
    "pinterest",
    "tiktok",
    "googlebusiness",
    "startPage",
    "mastodon",
    "youtube",
    "threads",
    "bluesky",
]
Mode = Literal["addToQueue", "shareNow", "customScheduled"]

# support.buffer.com/article/588. X: 280 for X Free users, 25,000 for paid ones; the values of
# TwitterMetadata.subscriptionType are not documented, so 280 is kept for every X channel (a longer
# post could be refused or cut by X; a shorter limit only asks the author to shorten).
TEXT_LIMITS: dict[str, int] = {
    "facebook": 5000,
    "instagram": 2200,
    "twitter": 280,
    "linkedin": 3000,
    "pinterest": 500,
    "tiktok": 2200,
    "startPage": 5000,
    "mastodon": 500,
    "youtube": 5000,
    "threads": 500,
    "bluesky": 300,
}
NETWORK_NAMES: dict[str, str] = {
    "twitter": "X (Twitter)",
    "googlebusiness": "Google Business Profile",
    "startPage": "Start Page",
    "linkedin": "LinkedIn",
    "tiktok": "TikTok",
    "youtube": "YouTube",
}


class Channel(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    display_name: str | None = None
    service: str  # Buffer's Service enum; a new network reads as is, with no text limit known
    type: str = "profile"
    timezone: str = "Europe/London"  # Buffer's documented default
    is_locked: bool = False
    is_disconnected: bool = False
    is_queue_paused: bool = False
    max_characters: int | None = None  # MastodonMetadata.maxCharacters: the instance's own limit

    @classmethod
    def from_api(cls, node: dict[str, Any]) -> Channel:
        metadata = node.get("metadata") or {}
        return cls(
            id=str(node["id"]),
            name=str(node.get("name") or ""),
            display_name=node.get("displayName"),
            service=str(node.get("service") or ""),
            type=str(node.get("type") or "profile"),
            timezone=str(node.get("timezone") or "Europe/London"),
            is_locked=bool(node.get("isLocked")),
            is_disconnected=bool(node.get("isDisconnected")),
            is_queue_paused=bool(node.get("isQueuePaused")),
            max_characters=metadata.get("maxCharacters") if isinstance(metadata.get("maxCharacters"), int) else None,
        )

    @property
    def network(self) -> str:
        return NETWORK_NAMES.get(self.service, self.service.title())

    @property
    def label(self) -> str:
        return f"{self.network}: {self.display_name or self.name}"

    @property
    def usable(self) -> bool:
        """Buffer: locked channels can't be used for posting; a disconnected one needs the owner."""
        return not (self.is_locked or self.is_disconnected)

    def text_limit(self) -> int | None:
        if self.service == "mastodon" and self.max_characters:
            return self.max_characters
        return TEXT_LIMITS.get(self.service)

    def text_problem(self, text: str) -> str | None:
        """Why `text` cannot go to this channel, or None."""
        limit = self.text_limit()
        if limit is not None and len(text) > limit:
            return f"{self.network} takes at most {limit} characters; this text has {len(text)}"
        return None


class Post(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    status: str
    channel_id: str
    via: str | None = None
    share_mode: str | None = None
    created_at: datetime | None = None
    due_at: datetime | None = None
    external_link: str | None = None
    image_urls: list[str] = Field(default_factory=list)

    @classmethod
    def from_api(cls, node: dict[str, Any]) -> Post:
        return cls(
            id=str(node["id"]),
            text=str(node.get("text") or ""),
            status=str(node.get("status") or ""),
            channel_id=str(node.get("channelId") or ""),
            via=node.get("via"),
            share_mode=node.get("shareMode"),
            created_at=node.get("createdAt"),
            due_at=node.get("dueAt"),
            external_link=node.get("externalLink"),
            image_urls=[str(a["source"]) for a in node.get("assets") or [] if isinstance(a, dict) and a.get("source")],
        )


class PostRequest(BaseModel):
    """One createPost. A link goes in the text (X and Mastodon take no link attachment, and Buffer
    refuses a link attachment next to an image); an image is an `image` asset Buffer fetches from
    its public HTTPS URL when the post goes out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel_id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    image_url: str | None = None
    mode: Mode = "addToQueue"
    due_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _due_with_custom_time(self) -> PostRequest:
        if (self.mode == "customScheduled") != (self.due_at is not None):
            raise ValueError("a time is given exactly when the mode is customScheduled")
        return self

    def variables(self) -> dict[str, Any]:
        given: dict[str, Any] = {
            "channelId": self.channel_id,
            "text": self.text,
            "schedulingType": "automatic",  # publishes; `notification` would only remind someone
            "mode": self.mode,
            "assets": [{"image": {"url": self.image_url}}] if self.image_url else [],
            "source": "opsdesk",
        }
        if self.due_at is not None:
            given["dueAt"] = iso_utc(self.due_at)
        return {"input": given}


def iso_utc(moment: datetime) -> str:
    """Buffer's DateTime: ISO 8601 in UTC, milliseconds, `Z` (a naive time has no meaning here)."""
    if moment.tzinfo is None:
        raise ValueError("Buffer times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_URL = re.compile(r"https?://\S+")


def same_text(sent: str, found: str) -> bool:
    """Whether Buffer's stored text is the text we sent. A channel with link shortening may rewrite
    URLs, so URLs are masked; whitespace at the ends is not significant."""
    return _URL.sub("<url>", sent).strip() == _URL.sub("<url>", found).strip()
