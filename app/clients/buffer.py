"""Buffer's client as the app builds it: typed configs from the settings, the credential (the
personal API key, or the OAuth grant stored encrypted in the database), and the owner told on
Discord the moment the grant needs reconnecting (the daily report keeps saying so until it is)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app.clients.buffer_tokens import DbTokenStore, TokenCipher
from app.clients.configs import discord_config
from app.clients.rate_slots import DbRateSlots
from app.core.database import Database
from app.core.settings import Settings
from integrations import buffer, buffer_oauth
from integrations.buffer import AccessTokens, ApiKey, BufferClient
from integrations.buffer_oauth import BufferOAuth, OAuthTokens
from integrations.discord import DiscordClient, Embed, WebhookMessage
from integrations.discord_text import literal
from integrations.errors import IntegrationError, NotConfigured

log = logging.getLogger(__name__)
RECONNECT_COLOUR = 0xE74C3C


def buffer_config(settings: Settings) -> buffer.BufferConfig:
    if settings.buffer_auth is None:
        raise NotConfigured(
            "set BUFFER_API_KEY, or BUFFER_CLIENT_ID and connect with `opsdesk buffer connect`", system=buffer.SYSTEM
        )
    return buffer.BufferConfig(
        api_url=settings.buffer_api_url or buffer.DEFAULT_API_URL,
        organization_id=settings.buffer_organization_id,
        timeout_seconds=settings.buffer_timeout_seconds,
        requests_per_15_minutes=settings.buffer_requests_per_15_min,
        requests_per_day=settings.buffer_requests_per_day,
        post_recheck_seconds=settings.buffer_post_recheck_seconds,
    )


def buffer_oauth_config(settings: Settings) -> buffer_oauth.BufferOAuthConfig:
    if not settings.buffer_client_id:
        raise NotConfigured("BUFFER_CLIENT_ID is not configured", system=buffer.SYSTEM)
    return buffer_oauth.BufferOAuthConfig(
        client_id=settings.buffer_client_id,
        client_secret=settings.buffer_client_secret,
        redirect_uri=settings.buffer_redirect_uri or f"{settings.public_base_url}/buffer/callback",
        auth_url=settings.buffer_auth_url or buffer_oauth.DEFAULT_AUTH_URL,
        timeout_seconds=settings.buffer_timeout_seconds,
    )


def token_store(db: Database, settings: Settings) -> DbTokenStore:
    if settings.buffer_token_key is None:
        raise NotConfigured("BUFFER_TOKEN_KEY is not configured", system=buffer.SYSTEM)
    return DbTokenStore(db, TokenCipher(settings.buffer_token_key), on_reconnect=reconnect_alert(settings))


def reconnect_message(reason: str) -> WebhookMessage:
    return WebhookMessage(
        embeds=[
            Embed(
                title="Buffer needs reconnecting",
                description=(
                    "Nothing posts to Buffer until the owner runs `opsdesk buffer connect` again.\n"
                    f"Why: {literal(reason)}"
                ),
                color=RECONNECT_COLOUR,
            )
        ]
    )


def reconnect_alert(settings: Settings) -> Callable[[str], None]:
    """Tell the owner on Discord, once, when the grant dies. Best effort: the daily report says it
    too, every day until it is fixed, so a failed post here loses nothing."""

    def alert(reason: str) -> None:
        try:
            config = discord_config(settings)
        except NotConfigured:
            return
        client = DiscordClient(config)
        try:
            client.execute(reconnect_message(reason))
        except IntegrationError as exc:
            log.warning("could not tell Discord that Buffer needs reconnecting: %s", exc.message)
        finally:
            client.close()

    return alert


def buffer_client(settings: Settings, db: Database, *, sleep: Callable[[float], None] = time.sleep) -> BufferClient:
    config = buffer_config(settings)
    tokens: AccessTokens
    if settings.buffer_api_key is not None:
        tokens = ApiKey(settings.buffer_api_key)
    else:
        tokens = OAuthTokens(BufferOAuth(buffer_oauth_config(settings)), token_store(db, settings), sleep=sleep)
    return BufferClient(config, tokens=tokens, slots=DbRateSlots(db), sleep=sleep)
