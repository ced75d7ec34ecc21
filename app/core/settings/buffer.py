"""Buffer's settings part (social posts; integrations/buffer.py).

Two ways to reach Buffer: BUFFER_API_KEY (a personal key: the business posting to its own channels)
or an OAuth app client (BUFFER_CLIENT_ID, BUFFER_CLIENT_SECRET when confidential,
BUFFER_REDIRECT_URI), connected once with `opsdesk buffer connect`; its tokens are stored in the
database encrypted with BUFFER_TOKEN_KEY. With both set, the API key is used. Neither is required
on its own, so the part names no `required` setting and no single `health_setting`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from cryptography.fernet import Fernet
from pydantic import Field, PositiveInt, SecretStr, field_validator, model_validator

from app.core.settings.part import ClientDeps, OptionalHttpUrl, Secret, SettingsPart, rule_broken
from integrations.errors import NotConfigured

if TYPE_CHECKING:  # the integration loads with the first client, not with the settings
    from integrations.buffer import BufferClient, BufferConfig
    from integrations.buffer_oauth import BufferOAuthConfig

FERNET_HINT = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


class BufferSettings(SettingsPart):
    part: ClassVar[str] = "buffer"

    buffer_api_key: Secret = None
    buffer_client_id: str | None = None
    buffer_client_secret: Secret = None  # unset: a public client (PKCE alone)
    buffer_redirect_uri: OptionalHttpUrl = None  # as registered with the app; PUBLIC_BASE_URL/buffer/callback
    buffer_token_key: SecretStr | None = None  # a Fernet key: encrypts the stored OAuth tokens
    buffer_organization_id: str | None = None  # needed only when the account sees several
    buffer_api_url: OptionalHttpUrl = None  # https://api.buffer.com
    buffer_auth_url: OptionalHttpUrl = None  # https://auth.buffer.com
    buffer_timeout_seconds: float = Field(15.0, gt=0)
    # Buffer's limits per client: 100 calls per 15 minutes on every plan; per 24 hours, Free 100,
    # Essentials 250, Team 500. Counted in the database, so every process shares them.
    buffer_requests_per_15_min: PositiveInt = 100
    buffer_requests_per_day: PositiveInt = 100
    # a post whose answer was lost is looked up (never re-sent) after this long
    buffer_post_recheck_seconds: float = Field(60.0, gt=30)

    @field_validator("buffer_token_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value().strip()
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ValueError(f"must be a Fernet key (32 url-safe base64 bytes): {FERNET_HINT}") from None
        return SecretStr(key)

    @model_validator(mode="after")
    def _oauth_needs_a_key(self) -> BufferSettings:
        if self.buffer_api_key is None and self.buffer_client_id and self.buffer_token_key is None:
            raise rule_broken(
                "BUFFER_CLIENT_ID needs BUFFER_TOKEN_KEY: the OAuth tokens are stored encrypted", "buffer_client_id"
            )
        return self

    @property
    def buffer_auth(self) -> Literal["api_key", "oauth"] | None:
        """Which credential Buffer calls use, or None (Buffer is not set up)."""
        if self.buffer_api_key is not None:
            return "api_key"
        return "oauth" if self.buffer_client_id else None

    def buffer_config(self) -> BufferConfig:
        from integrations import buffer

        if self.buffer_auth is None:
            raise NotConfigured(
                "set BUFFER_API_KEY, or BUFFER_CLIENT_ID and connect with `opsdesk buffer connect`",
                system=buffer.SYSTEM,
            )
        return buffer.BufferConfig(
            api_url=self.buffer_api_url or buffer.DEFAULT_API_URL,
            organization_id=self.buffer_organization_id,
            timeout_seconds=self.buffer_timeout_seconds,
            requests_per_15_minutes=self.buffer_requests_per_15_min,
            requests_per_day=self.buffer_requests_per_day,
            post_recheck_seconds=self.buffer_post_recheck_seconds,
        )

    def buffer_oauth_config(self, public_base_url: str) -> BufferOAuthConfig:
        from integrations import buffer_oauth

        if not self.buffer_client_id:
            raise NotConfigured("BUFFER_CLIENT_ID is not configured", system=buffer_oauth.SYSTEM)
        return buffer_oauth.BufferOAuthConfig(
            client_id=self.buffer_client_id,
            client_secret=self.buffer_client_secret,
            redirect_uri=self.buffer_redirect_uri or f"{public_base_url}/buffer/callback",
            auth_url=self.buffer_auth_url or buffer_oauth.DEFAULT_AUTH_URL,
            timeout_seconds=self.buffer_timeout_seconds,
        )

    def buffer_client(self, deps: ClientDeps) -> BufferClient:
        from integrations.buffer import SYSTEM, AccessTokens, ApiKey, BufferClient
        from integrations.buffer_oauth import BufferOAuth, OAuthTokens

        config = self.buffer_config()
        if deps.rate_slots is None:
            raise NotConfigured("Buffer's rate limits are shared through the database: Clients needs it", system=SYSTEM)
        tokens: AccessTokens
        if self.buffer_api_key is not None:
            tokens = ApiKey(self.buffer_api_key)
        else:
            if deps.buffer_tokens is None:
                raise NotConfigured("Buffer's OAuth tokens live in the database: Clients needs it", system=SYSTEM)
            # Settings has PUBLIC_BASE_URL (the service part): the default redirect address
            public = str(getattr(self, "public_base_url", ""))
            oauth = BufferOAuth(self.buffer_oauth_config(public))
            tokens = OAuthTokens(oauth, deps.buffer_tokens, sleep=deps.sleep)
        return BufferClient(config, tokens=tokens, slots=deps.rate_slots, breaker=deps.breaker, sleep=deps.sleep)
