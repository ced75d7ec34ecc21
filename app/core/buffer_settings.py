"""Buffer's settings, a part of `Settings` (app.core.settings) kept in its own module.

Two ways to reach Buffer: BUFFER_API_KEY (a personal key: the business posting to its own channels)
or an OAuth app client (BUFFER_CLIENT_ID, BUFFER_CLIENT_SECRET when confidential,
BUFFER_REDIRECT_URI), connected once with `opsdesk buffer connect`; its tokens are stored in the
database encrypted with BUFFER_TOKEN_KEY. With both set, the API key is used.
"""

from __future__ import annotations

from cryptography.fernet import Fernet
from pydantic import BaseModel, Field, PositiveInt, SecretStr, ValidationInfo, field_validator

from app.core import setting_values as values


class BufferSettings(BaseModel):
    buffer_api_key: SecretStr | None = None
    buffer_client_id: str | None = None
    buffer_client_secret: SecretStr | None = None  # unset: a public client (PKCE alone)
    buffer_redirect_uri: str | None = None  # as registered with the app; PUBLIC_BASE_URL/buffer/callback
    buffer_token_key: SecretStr | None = None  # a Fernet key: encrypts the stored OAuth tokens
    buffer_organization_id: str | None = None  # needed only when the account sees several
    buffer_api_url: str | None = None  # https://api.buffer.com
    buffer_auth_url: str | None = None  # https://auth.buffer.com
    buffer_timeout_seconds: float = Field(15.0, gt=0)
    # Buffer's limits per client: 100 calls per 15 minutes on every plan; per 24 hours, Free 100,
    # Essentials 250, Team 500. Counted in the database, so every process shares them.
    buffer_requests_per_15_min: PositiveInt = 100
    buffer_requests_per_day: PositiveInt = 100
    # a post whose answer was lost is looked up (never re-sent) after this long
    buffer_post_recheck_seconds: float = Field(60.0, gt=30)

    @field_validator("buffer_api_url", "buffer_auth_url", "buffer_redirect_uri")
    @classmethod
    def _buffer_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        return values.http_url(value, field=str(info.field_name).upper())

    @field_validator("buffer_api_key", "buffer_client_secret")
    @classmethod
    def _buffer_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        return values.no_placeholder(value)

    @field_validator("buffer_token_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            Fernet(value.get_secret_value().strip().encode())
        except (ValueError, TypeError):
            raise ValueError(
                "must be a Fernet key (32 url-safe base64 bytes): python -c 'from cryptography.fernet "
                "import Fernet; print(Fernet.generate_key().decode())'"
            ) from None
        return SecretStr(value.get_secret_value().strip())

    @property
    def buffer_auth(self) -> str | None:
        """Which credential Buffer calls use: "api_key", "oauth", or None (Buffer is not set up)."""
        if self.buffer_api_key is not None:
            return "api_key"
        return "oauth" if self.buffer_client_id else None

    def buffer_auth_problem(self) -> str | None:
        """What the chosen credential still lacks (`opsdesk config check` reports it)."""
        if self.buffer_auth == "oauth" and self.buffer_token_key is None:
            return "BUFFER_CLIENT_ID needs BUFFER_TOKEN_KEY: the OAuth tokens are stored encrypted"
        return None

    def buffer_auth_note(self) -> str:
        if self.buffer_auth == "api_key":
            return "the personal API key (BUFFER_API_KEY) acts for the account that made it"
        if self.buffer_auth == "oauth":
            return "an OAuth app client: connect once with `opsdesk buffer connect`; tokens stored encrypted"
        return "set BUFFER_API_KEY, or BUFFER_CLIENT_ID with BUFFER_TOKEN_KEY"
