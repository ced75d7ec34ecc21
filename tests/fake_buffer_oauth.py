"""The OAuth side of the fake Buffer (auth.buffer.com): discovery documents, the authorization
endpoint (auto-approving, redirecting with `code`, `state` and `iss`), and the token endpoint for
`authorization_code` with PKCE S256 and `refresh_token`, with Buffer's documented rules: access tokens
live `expires_in` seconds on an injectable clock; refresh tokens are single-use and rotate; presenting
a spent refresh token revokes every token of its grant. Errors are OAuth JSON bodies
`{"error", "error_description"}` (400, or 401 for client authentication), as node-oidc-provider —
which the server's endpoint set matches — answers them. Thread-safe: several OS processes may refresh
at once, and `refresh_calls` counts every refresh that reached the server. See docs/vendors/buffer.md
(from https://developers.buffer.com/guides/authentication.html)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fake_http import DropConnection, Recorded, Reply

SCOPES = (
    "offline_access",
    "posts:read",
    "posts:write",
    "ideas:read",
    "ideas:write",
    "account:read",
    "account:write",
    "insights:read",
    "engagements:read",
    "engagements:write",
)
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class ManualClock:
    """The fake's notion of now; tests move it instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 12, 2, 16, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class Client:
    client_id: str
    secret: str | None  # None: a public client (PKCE alone)
    redirect_uris: tuple[str, ...]


@dataclass
class Grant:
    grant_id: str
    client_id: str
    scope: str
    revoked: bool = False


@dataclass
class Code:
    grant: Grant
    redirect_uri: str
    challenge: str
    issued_at: datetime
    offline: bool
    used: bool = False


@dataclass
class AccessToken:
    grant: Grant
    expires_at: datetime


@dataclass
class RefreshToken:
    grant: Grant
    consumed: bool = False


@dataclass
class TokenFault:
    """The next token request of `grant_type` is processed (tokens rotate), then its answer is lost:
    held until the server stops (the client times out) or the connection is dropped."""

    grant_type: str
    how: Literal["hold", "drop"]


def oauth_error(error: str, description: str, status: int = 400) -> Reply:
    return Reply(status, {"error": error, "error_description": description}, dict(_NO_STORE))


@dataclass
class FakeBufferAuth:
    clock: Callable[[], datetime]
    issuer: Callable[[], str]  # the auth server's base URL, known once it listens
    release: threading.Event  # set when the fake stops: ends every held answer
    access_ttl: int = 3600
    code_ttl: int = 60
    clients: dict[str, Client] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    faults: list[TokenFault] = field(default_factory=list)
    deny_next: bool = False  # the next authorization is refused by the user (error=access_denied)
    refresh_gate: threading.Event | None = None  # when set to an Event, refreshes wait on it first
    refresh_arrived: threading.Event = field(default_factory=threading.Event)
    refresh_calls: int = 0  # refresh_token requests that reached the server, good or bad
    refreshes: int = 0  # refreshes that rotated a token
    reuse_detected: int = 0  # spent refresh tokens presented (each revoked its grant)
    lost_answers: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._arrivals = threading.Condition(self._lock)

    def wait_refresh_calls(self, count: int, timeout: float = 5) -> bool:
        """Block until `count` refresh requests have reached the server (a race test's barrier)."""
        with self._arrivals:
            return self._arrivals.wait_for(lambda: self.refresh_calls >= count, timeout)

    def register_client(self, client_id: str, secret: str | None, redirect_uris: tuple[str, ...]) -> Client:
        client = Client(client_id, secret, redirect_uris)
        self.clients[client_id] = client
        return client

    # --- what the API side asks --------------------------------------------------------------
    def access_client(self, token: str) -> str | None:
        """The client id a live access token belongs to, else None (unknown, expired, revoked)."""
        with self._lock:
            access = self.access_tokens.get(token)
            if access is None or access.grant.revoked or access.expires_at <= self.clock():
                return None
            return access.grant.client_id

    def revoke_grant(self, grant_id: str) -> None:
        """What Buffer does on refresh-token reuse, and when the user revokes the app."""
        with self._lock:
            self._revoke(self.grants[grant_id])

    def _revoke(self, grant: Grant) -> None:
        grant.revoked = True
        for store in (self.access_tokens, self.refresh_tokens):
            for token in [t for t, record in store.items() if record.grant is grant]:
                del store[token]

    def revoked_grants(self) -> list[str]:
        with self._lock:
            return [g.grant_id for g in self.grants.values() if g.revoked]

    def issue(
        self,
        client_id: str,
        scope: str = "posts:read posts:write account:read offline_access",
    ) -> dict[str, str | int]:
        """Tokens for a grant made without the browser dance (test set-up)."""
        with self._lock:
            grant = self._new_grant(client_id, scope)
            return self._tokens(grant, offline="offline_access" in scope.split())

    # --- HTTP --------------------------------------------------------------------------------
    def respond(self, request: Recorded) -> Reply:
        path = urlsplit(request.path).path
        if request.method == "GET" and path in (
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ):
            return Reply(200, self.discovery())
        if request.method == "GET" and path == "/auth":
            return self._authorize(request)
        if request.method == "POST" and path == "/token":
            return self._token(request)
        return Reply(404, {"error": "invalid_request", "error_description": "unrecognized route or not allowed method"})

    def discovery(self) -> dict[str, object]:
        base = self.issuer()
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/auth",
            "token_endpoint": f"{base}/token",
            "introspection_endpoint": f"{base}/token/introspection",
            "revocation_endpoint": f"{base}/token/revocation",
            "registration_endpoint": f"{base}/reg",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(SCOPES),
            "authorization_response_iss_parameter_supported": True,
            "response_modes_supported": ["form_post", "fragment", "query"],
        }

    def _authorize(self, request: Recorded) -> Reply:
        params = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return oauth_error("invalid_client", "client is invalid")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return oauth_error(
                "invalid_redirect_uri", "redirect_uri did not match any of the client's registered redirect_uris"
            )

        def back(**answer: str) -> Reply:
            answer = {**answer, "iss": self.issuer()}
            if "state" in params:
                answer["state"] = params["state"]
            return Reply(302, b"", {"Location": f"{redirect_uri}?{urlencode(answer)}"})

        scopes = params.get("scope", "").split()
        if params.get("response_type") != "code":
            return back(error="unsupported_response_type", error_description="unsupported response_type requested")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return back(error="invalid_request", error_description="PKCE (S256 code_challenge) is required")
        if not scopes or any(s not in SCOPES for s in scopes):
            return back(error="invalid_scope", error_description="requested scope is not valid")
        with self._lock:
            if self.deny_next:
                self.deny_next = False
                return back(error="access_denied", error_description="End-User aborted interaction")
            # offline_access yields a refresh token only with a consent prompt (hence Buffer's prompt=consent)
            offline = "offline_access" in scopes and "consent" in params.get("prompt", "").split()
            granted = " ".join(s for s in scopes if s != "offline_access" or offline)
            code = secrets.token_urlsafe(32)
            self.codes[code] = Code(
                self._new_grant(client.client_id, granted),
                redirect_uri,
                params["code_challenge"],
                self.clock(),
                offline,
            )
        return back(code=code)

    def _token(self, request: Recorded) -> Reply:
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return oauth_error(
                "invalid_request", "only application/x-www-form-urlencoded content-type bodies are supported"
            )
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        client = self.clients.get(form.get("client_id", ""))
        secret = form.get("client_secret")
        if (
            client is None
            or (client.secret is None and secret is not None)
            or (client.secret is not None and not secrets.compare_digest(secret or "", client.secret))
        ):
            return oauth_error("invalid_client", "client authentication failed", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            reply = self._exchange(client, form)
        elif grant_type == "refresh_token":
            reply = self._refresh(client, form)
        else:
            return oauth_error("unsupported_grant_type", f"unsupported grant_type requested ({grant_type})")
        with self._lock:
            fault = next((f for f in self.faults if f.grant_type == grant_type), None)
            if fault is not None and reply.status == 200:
                self.faults.remove(fault)
                self.lost_answers += 1
        if fault is not None and reply.status == 200:
            if fault.how == "drop":
                raise DropConnection
            self.release.wait(30)  # the client times out first; the fake's exit ends the wait
        return reply

    def _exchange(self, client: Client, form: dict[str, str]) -> Reply:
        for name in ("code", "redirect_uri"):
            if not form.get(name):
                return oauth_error("invalid_request", f"missing required parameter '{name}'")
        with self._lock:
            code = self.codes.get(form["code"])
            if code is None or code.grant.client_id != client.client_id:
                return oauth_error("invalid_grant", "grant request is invalid")
            if code.used:  # RFC 6749 4.1.2: a code used twice revokes what it issued
                self._revoke(code.grant)
                return oauth_error("invalid_grant", "grant request is invalid")
            if (self.clock() - code.issued_at).total_seconds() > self.code_ttl:
                return oauth_error("invalid_grant", "Authorization code has expired")
            if form["redirect_uri"] != code.redirect_uri:
                return oauth_error("invalid_grant", "grant request is invalid")
            verifier = form.get("code_verifier", "")
            if not _VERIFIER.fullmatch(verifier) or not secrets.compare_digest(s256(verifier), code.challenge):
                return oauth_error("invalid_grant", "grant request is invalid")
            code.used = True
            return Reply(200, self._tokens(code.grant, code.offline), dict(_NO_STORE))

    def _refresh(self, client: Client, form: dict[str, str]) -> Reply:
        with self._arrivals:
            self.refresh_calls += 1
            self._arrivals.notify_all()
        self.refresh_arrived.set()
        if self.refresh_gate is not None:
            self.refresh_gate.wait(30)
        if not form.get("refresh_token"):
            return oauth_error("invalid_request", "missing required parameter 'refresh_token'")
        with self._lock:
            record = self.refresh_tokens.get(form["refresh_token"])
            if record is None or record.grant.client_id != client.client_id:
                return oauth_error("invalid_grant", "grant request is invalid")
            if record.consumed:
                self.reuse_detected += 1
                self._revoke(record.grant)
                return oauth_error("invalid_grant", "grant request is invalid")
            record.consumed = True
            self.refreshes += 1
            return Reply(200, self._tokens(record.grant, offline=True), dict(_NO_STORE))

    def _new_grant(self, client_id: str, scope: str) -> Grant:
        grant = Grant(secrets.token_hex(12), client_id, scope)
        self.grants[grant.grant_id] = grant
        return grant

    def _tokens(self, grant: Grant, offline: bool) -> dict[str, str | int]:
        access = secrets.token_urlsafe(32)
        self.access_tokens[access] = AccessToken(grant, self.clock() + timedelta(seconds=self.access_ttl))
        body: dict[str, str | int] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "scope": grant.scope,
        }
        if offline:
            refresh = f"v1.{secrets.token_urlsafe(32)}"
            self.refresh_tokens[refresh] = RefreshToken(grant)
            body["refresh_token"] = refresh
        return body
