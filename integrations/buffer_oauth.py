"""Buffer's OAuth 2.0: the authorization link (code + PKCE S256), the code exchange, and the token
refresh done exactly once across every process.

Buffer's rules (docs/vendors/buffer.md, from https://developers.buffer.com/guides/authentication.html):
PKCE S256 is required of every client; a confidential client sends its secret in the form body
(`client_secret_post`), a public one must not send any; `offline_access` with `prompt=consent` gives a
refresh token; **refresh tokens are single-use: a refresh returns a new one, and presenting a spent one
revokes every token of the grant.**

So the refresh is serialised by the app's `TokenStore` (the database): `begin_refresh` locks the
grant, re-reads it, and hands out a lease to one caller only if the access token is still about to
expire; that caller refreshes once and stores the new pair with `finish_refresh`. A refresh whose
answer never came (a timeout, a dropped connection, a 5xx: Buffer may have rotated the token) is never
sent again with the old token: the grant is marked "reconnect needed" and nothing posts until the
owner connects again. Only a refresh that never left (the connection was refused) is tried again.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.errors import AuthRevoked, InvalidRequest, NotConfigured, TransientError

SYSTEM = "buffer"
DEFAULT_AUTH_URL = "https://auth.buffer.com"
# what opsdesk needs: read channels and posts, create posts, and a refresh token
DEFAULT_SCOPES = "posts:write posts:read account:read offline_access"


class ReconnectNeeded(AuthRevoked):
    """Buffer no longer accepts this connection (refused or revoked, or a refresh whose answer was
    lost): nothing posts until the owner connects again (`opsdesk buffer connect`)."""

    code = "buffer_reconnect_needed"


class BufferOAuthConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None  # None: a public client (PKCE alone)
    redirect_uri: str = Field(min_length=1)
    auth_url: str = DEFAULT_AUTH_URL
    scopes: str = DEFAULT_SCOPES
    timeout_seconds: float = Field(15.0, gt=0)
    refresh_margin_seconds: float = Field(300.0, ge=0)  # refresh when the token has less left than this
    refresh_lease_seconds: float = Field(60.0, gt=0)  # longer than a refresh call can take
    refresh_wait_seconds: float = Field(30.0, gt=0)  # how long a process waits for another's refresh


class Pkce(BaseModel):
    model_config = ConfigDict(frozen=True)

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        # 32 random bytes, base64url without padding: Buffer's own example
        verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        return cls(verifier=verifier, challenge=s256(verifier))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class TokenPair(BaseModel):
    """A token answer. Its lifetime stays relative: the store dates it on its own clock (the
    database's), so no process's clock decides when a token expires."""

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_in: float = Field(ge=0)
    scope: str = ""


class GrantState(BaseModel):
    """What the store holds for the connection, as the client needs it."""

    model_config = ConfigDict(frozen=True)

    status: Literal["connected", "reconnect_needed"]
    access_token: SecretStr | None = None
    seconds_left: float | None = None  # of the access token, on the store's clock
    reason: str | None = None


class RefreshStart(BaseModel):
    """`begin_refresh`'s answer, decided under the grant's lock.

    fresh: the token has time left (another process refreshed it) - use `grant`.
    refresh: this caller holds the lease `lease` and must refresh with `refresh_token`, once.
    busy: another caller holds a live lease - ask again in `retry_after` seconds.
    reconnect_needed: the grant is dead (`reason`); also when a lease ran out unfinished, since
    that refresh's answer was lost."""

    model_config = ConfigDict(frozen=True)

    state: Literal["fresh", "refresh", "busy", "reconnect_needed"]
    grant: GrantState | None = None
    lease: str | None = None
    refresh_token: SecretStr | None = None
    retry_after: float = 0.0
    reason: str | None = None


class TokenStore(Protocol):
    """Where the grant lives, shared by every process (the app: the database, encrypted)."""

    def current(self) -> GrantState | None:
        """The stored grant, or None when Buffer was never connected."""
        ...

    def begin_refresh(self, *, margin_seconds: float, lease_seconds: float) -> RefreshStart: ...

    def finish_refresh(self, lease: str, pair: TokenPair) -> None:
        """Store the new pair and end the lease, in one step."""
        ...

    def abandon_refresh(self, lease: str) -> None:
        """End the lease without a new pair: the refresh never reached Buffer (old token unspent)."""
        ...

    def reconnect_needed(self, reason: str, *, lease: str | None = None) -> None:
        """Mark the grant dead: nothing posts until the owner connects again."""
        ...


def authorization_url(config: BufferOAuthConfig, *, state: str, pkce: Pkce) -> str:
    query = {
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "response_type": "code",
        "scope": config.scopes,
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "prompt": "consent",  # without it the provider drops offline_access: no refresh token
    }
    return f"{config.auth_url.rstrip('/')}/auth?{urlencode(query)}"


class BufferOAuth:
    """The token endpoint. No retries here: a refresh must never be sent twice."""

    def __init__(self, config: BufferOAuthConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self._http = httpx.Client(timeout=config.timeout_seconds, transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def exchange_code(self, code: str, *, verifier: str) -> TokenPair:
        return self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.config.redirect_uri,
                "code_verifier": verifier,
            }
        )

    def refresh(self, refresh_token: SecretStr) -> TokenPair:
        """One refresh. Raises ReconnectNeeded when Buffer refuses the grant or the answer was lost,
        TransientError only when the request never left (the old token is still good)."""
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token.get_secret_value()})

    def _token(self, form: dict[str, str]) -> TokenPair:
        form = {"client_id": self.config.client_id, **form}
        if self.config.client_secret is not None:
            form["client_secret"] = self.config.client_secret.get_secret_value()
        grant_type = form["grant_type"]
        lost = "the refresh's answer was lost, and Buffer may have rotated the token"
        try:
            response = self._http.post(f"{self.config.auth_url.rstrip('/')}/token", data=form)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransientError(f"token endpoint unreachable ({type(exc).__name__})", system=SYSTEM) from exc
        except httpx.TransportError as exc:  # sent, and no answer: Buffer may have done it
            if grant_type == "refresh_token":
                raise ReconnectNeeded(f"{lost} ({type(exc).__name__})", system=SYSTEM) from exc
            raise TransientError(f"no answer from the token endpoint ({type(exc).__name__})", system=SYSTEM) from exc
        if response.status_code >= 500:
            if grant_type == "refresh_token":
                raise ReconnectNeeded(f"{lost} (HTTP {response.status_code})", system=SYSTEM)
            raise TransientError(f"token endpoint HTTP {response.status_code}", system=SYSTEM)
        body = _json(response)
        if response.status_code != 200:
            error = str(body.get("error") or f"HTTP {response.status_code}")
            description = str(body.get("error_description") or "")[:300]
            if error == "invalid_client":
                raise NotConfigured(f"Buffer refused the client id or secret: {description}", system=SYSTEM)
            if grant_type == "refresh_token" or error == "access_denied":
                raise ReconnectNeeded(f"{error}: {description}", system=SYSTEM)
            raise InvalidRequest(f"{error}: {description}", system=SYSTEM, details={"error": error})
        try:
            return TokenPair(
                access_token=SecretStr(str(body["access_token"])),
                refresh_token=SecretStr(str(body["refresh_token"])) if body.get("refresh_token") else None,
                expires_in=float(body.get("expires_in") or 3600),
                scope=str(body.get("scope") or ""),
            )
        except (KeyError, ValueError, TypeError) as exc:
            if grant_type == "refresh_token":  # a 200 we cannot read: the old token is spent
                raise ReconnectNeeded(f"{lost} (unreadable token answer)", system=SYSTEM) from exc
            raise InvalidRequest("unreadable token answer", system=SYSTEM) from exc


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class OAuthTokens:
    """The access token for each call: the stored one while it has time left, else one refresh,
    serialised through the store so exactly one process refreshes."""

    def __init__(
        self,
        oauth: BufferOAuth,
        store: TokenStore,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.oauth = oauth
        self.store = store
        self._sleep = sleep

    def access_token(self) -> str:
        config = self.oauth.config
        grant = self._usable(self.store.current())
        if grant is not None:
            return grant
        waited = 0.0
        while True:
            start = self.store.begin_refresh(
                margin_seconds=config.refresh_margin_seconds, lease_seconds=config.refresh_lease_seconds
            )
            if start.state == "reconnect_needed":
                raise ReconnectNeeded(start.reason or "Buffer must be connected again", system=SYSTEM)
            if start.state == "fresh" and start.grant is not None and start.grant.access_token is not None:
                return start.grant.access_token.get_secret_value()
            if start.state == "refresh" and start.lease is not None:
                return self._refresh(start)
            if waited >= config.refresh_wait_seconds:
                raise TransientError("another process is still refreshing Buffer's token", system=SYSTEM)
            wait = min(max(start.retry_after, 0.05), 1.0)
            self._sleep(wait)
            waited += wait

    def rejected(self, reason: str) -> None:
        """Buffer answered 401 to a token it issued: the user revoked the app (Buffer: prompt the
        user to re-authorize)."""
        self.store.reconnect_needed(reason)

    def _usable(self, grant: GrantState | None) -> str | None:
        if grant is None:
            raise NotConfigured("Buffer is not connected: run `opsdesk buffer connect`", system=SYSTEM)
        if grant.status == "reconnect_needed":
            raise ReconnectNeeded(grant.reason or "Buffer must be connected again", system=SYSTEM)
        margin = self.oauth.config.refresh_margin_seconds
        if grant.access_token is None or grant.seconds_left is None or grant.seconds_left <= margin:
            return None
        return grant.access_token.get_secret_value()

    def _refresh(self, start: RefreshStart) -> str:
        assert start.lease is not None
        if start.refresh_token is None:
            reason = "the stored grant has no refresh token (offline_access was not granted)"
            self.store.reconnect_needed(reason, lease=start.lease)
            raise ReconnectNeeded(reason, system=SYSTEM)
        try:
            pair = self.oauth.refresh(start.refresh_token)
        except ReconnectNeeded as exc:
            self.store.reconnect_needed(exc.message, lease=start.lease)
            raise
        except Exception:
            # the request never left (or our side failed before sending): the old token is unspent.
            # A process killed here leaves its lease to run out, which the store reads as a lost answer
            self.store.abandon_refresh(start.lease)
            raise
        self.store.finish_refresh(start.lease, pair)
        return pair.access_token.get_secret_value()
