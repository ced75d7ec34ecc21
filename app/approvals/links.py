"""Signed approval links (itsdangerous).

A token is bound to the action id, a hash of the exact draft it was issued for, its purpose
(review, or a one-click approve / reject), and an expiry that is the action's own expiry, never
later. Rotation: `APPROVAL_LINK_SECRET` signs; `APPROVAL_LINK_OLD_SECRETS` still verify.
Every URL is built from `PUBLIC_BASE_URL`, never from a request's Host header.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote
from uuid import UUID

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ValidationError

from app.core.errors import ConfigError, Conflict, Forbidden, Gone
from app.core.settings import Settings

Purpose = Literal["review", "approve", "reject", "inbox"]
_SALT = "opsdesk.approval-link.v1"
_HASH_CHARS = 32  # a prefix of the sha256 hex is plenty to tell drafts apart and keeps links short
INBOX = "inbox"


class LinkClaims(BaseModel):
    a: str  # action id, or "inbox"
    h: str  # draft hash prefix ("" for the inbox)
    p: Purpose
    e: int  # expiry, unix seconds


class LinkSigner:
    def __init__(self, settings: Settings) -> None:
        if settings.approval_link_secret is None:
            raise ConfigError("APPROVAL_LINK_SECRET is not configured")
        old = [secret.get_secret_value() for secret in settings.approval_link_old_secrets]
        # itsdangerous signs with the last key and verifies with any of them
        self._serializer = URLSafeSerializer([*old, settings.approval_link_secret.get_secret_value()], salt=_SALT)
        self.base_url = settings.public_base_url.rstrip("/")

    def token(self, action_id: UUID | str, draft_hash: str, purpose: Purpose, expires_at: datetime) -> str:
        claims = LinkClaims(a=str(action_id), h=draft_hash[:_HASH_CHARS], p=purpose, e=int(expires_at.timestamp()))
        return self._serializer.dumps(claims.model_dump())

    def url(self, action_id: UUID | str, draft_hash: str, purpose: Purpose, expires_at: datetime) -> str:
        return self.link(action_id, self.token(action_id, draft_hash, purpose, expires_at), purpose)

    def link(self, action_id: UUID | str, token: str, purpose: Purpose = "review") -> str:
        """The URL of a token already issued (a page links back to itself with its own token)."""
        quoted = quote(token, safe="")
        if purpose in ("review", "inbox"):
            return f"{self.base_url}/approvals/{action_id}?t={quoted}"
        return f"{self.base_url}/approvals/{action_id}?t={quoted}&do={purpose}"

    def inbox_url(self, expires_at: datetime) -> str:
        token = self._serializer.dumps(LinkClaims(a=INBOX, h="", p="inbox", e=int(expires_at.timestamp())).model_dump())
        return self.link(INBOX, token)

    def decision_url(self, action_id: UUID | str) -> str:
        """Where a review page's forms post (the inbox's own form posts to `inbox_decision_url`)."""
        return f"{self.base_url}/approvals/{action_id}/decision"

    @property
    def inbox_decision_url(self) -> str:
        return f"{self.base_url}/approvals/inbox"

    def verify(
        self,
        token: str,
        *,
        action_id: UUID | str,
        draft_hash: str | None,
        now: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> LinkClaims:
        """The claims of a valid token for this action and draft; otherwise Forbidden (tampered or
        foreign), Gone (expired) or Conflict (the draft changed since the link was issued).

        With `expires_at` (the action's current expiry) the token must also belong to the current
        pending round: an action sent back to pending gets a fresh expiry, and links issued for
        the earlier round, whose decision was already used, stop working."""
        claims = self._claims(token)
        if claims.a != str(action_id):
            raise Forbidden("this link belongs to another approval")
        self._check_expiry(claims, now)
        if draft_hash is not None and claims.h != draft_hash[:_HASH_CHARS]:
            raise Conflict(
                "the draft changed after this link was issued; use the newest link", details={"reason": "draft_changed"}
            )
        if expires_at is not None and claims.e != int(expires_at.timestamp()):
            raise Conflict(
                "this approval was reopened after this link was issued; use the newest link",
                details={"reason": "reopened"},
            )
        return claims

    def verify_inbox(self, token: str, *, now: datetime | None = None) -> LinkClaims:
        claims = self._claims(token)
        if claims.a != INBOX or claims.p != "inbox":
            raise Forbidden("this is not an inbox link")
        self._check_expiry(claims, now)
        return claims

    def _claims(self, token: str) -> LinkClaims:
        try:
            return LinkClaims.model_validate(self._serializer.loads(token))
        except (BadSignature, ValidationError, TypeError, ValueError) as exc:
            raise Forbidden("this link is not valid (tampered, truncated, or signed with another key)") from exc

    @staticmethod
    def _check_expiry(claims: LinkClaims, now: datetime | None) -> None:
        current = now or datetime.now(UTC)
        if current.timestamp() >= claims.e:
            raise Gone(f"this link expired at {datetime.fromtimestamp(claims.e, UTC):%Y-%m-%d %H:%M} UTC")
