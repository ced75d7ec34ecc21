"""Buffer's OAuth grant in the database: the `TokenStore` integrations/buffer_oauth.py is handed.

The tokens are encrypted before they reach the database (Fernet from `cryptography`: AES-128-CBC
with an HMAC-SHA256, so a changed ciphertext is refused rather than decrypted to garbage) with
BUFFER_TOKEN_KEY from the settings: a copy of the database, a backup or Supabase's table editor shows
no usable token. The refresh is serialised by schema.sql's buffer_refresh_* functions (a row lock and
a lease); this module only seals, opens and forwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from app.clients import sql
from app.core.database import Database
from integrations.buffer_oauth import SYSTEM, GrantState, RefreshStart, TokenPair
from integrations.errors import NotConfigured

log = logging.getLogger(__name__)


class TokenCipher:
    def __init__(self, key: SecretStr) -> None:
        try:
            self._fernet = Fernet(key.get_secret_value().encode())
        except (ValueError, TypeError) as exc:
            raise NotConfigured(
                "BUFFER_TOKEN_KEY is not a Fernet key (32 url-safe base64-encoded bytes): make one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`",
                system=SYSTEM,
            ) from exc

    def seal(self, secret: SecretStr) -> str:
        return self._fernet.encrypt(secret.get_secret_value().encode()).decode()

    def open(self, sealed: str) -> SecretStr:
        try:
            return SecretStr(self._fernet.decrypt(sealed.encode()).decode())
        except InvalidToken as exc:
            raise NotConfigured(
                "BUFFER_TOKEN_KEY does not open the stored Buffer tokens (the key changed?): restore the key, "
                "or run `opsdesk buffer connect` again",
                system=SYSTEM,
            ) from exc


class DbTokenStore:
    """`on_reconnect(reason)` runs once, in the process that marked the grant dead (to tell the owner)."""

    def __init__(self, db: Database, cipher: TokenCipher, *, on_reconnect: Callable[[str], None] | None = None) -> None:
        self._db = db
        self._cipher = cipher
        self._on_reconnect = on_reconnect

    def save(self, pair: TokenPair) -> GrantState:
        """A new connection replaces the old one, dead or alive."""
        row = sql.buffer_grant_save(
            self._db,
            access_token_enc=self._cipher.seal(pair.access_token),
            refresh_token_enc=self._cipher.seal(pair.refresh_token) if pair.refresh_token else None,
            expires_in=pair.expires_in,
            scope=pair.scope,
        )
        return self._state(row)

    def current(self) -> GrantState | None:
        row = sql.buffer_grant_current(self._db)
        return None if row is None else self._state(row)

    def status(self) -> dict[str, Any] | None:
        """The grant without its tokens: for the report, `config check` and the CLI."""
        status: dict[str, Any] | None = sql.buffer_grant_status(self._db)
        return status

    def begin_refresh(self, *, margin_seconds: float, lease_seconds: float) -> RefreshStart:
        row = sql.buffer_refresh_begin(self._db, margin_seconds=margin_seconds, lease_seconds=lease_seconds)
        if row.get("newly") and self._on_reconnect is not None:  # it found a refresh that never finished
            self._on_reconnect(str(row.get("reason")))
        sealed = row.get("refresh_token_enc")
        return RefreshStart(
            state=row["state"],
            grant=self._state(row["grant"]) if row.get("grant") else None,
            lease=str(row["lease"]) if row.get("lease") else None,
            refresh_token=self._cipher.open(sealed) if sealed else None,
            retry_after=float(row.get("retry_after") or 0.0),
            reason=row.get("reason"),
        )

    def finish_refresh(self, lease: str, pair: TokenPair) -> None:
        sql.buffer_refresh_finish(
            self._db,
            lease=UUID(lease),
            access_token_enc=self._cipher.seal(pair.access_token),
            refresh_token_enc=self._cipher.seal(pair.refresh_token) if pair.refresh_token else None,
            expires_in=pair.expires_in,
            scope=pair.scope,
        )

    def abandon_refresh(self, lease: str) -> None:
        sql.buffer_refresh_abandon(self._db, lease=UUID(lease))

    def reconnect_needed(self, reason: str, *, lease: str | None = None) -> None:
        answer = sql.buffer_grant_reconnect(self._db, reason=reason, lease=UUID(lease) if lease else None)
        log.warning("Buffer needs reconnecting: %s", reason)
        if answer.get("newly") and self._on_reconnect is not None:
            self._on_reconnect(reason)

    def _state(self, row: dict[str, Any]) -> GrantState:
        connected = row["status"] == "connected"
        return GrantState(
            status=row["status"],
            access_token=self._cipher.open(row["access_token_enc"]) if connected else None,
            seconds_left=row.get("seconds_left"),
            reason=row.get("reason"),
        )
