"""What Buffer's client needs from the app (its settings part builds the client itself): the OAuth
grant's store in the database, encrypted, and the owner told on Discord the moment the grant needs
reconnecting (the daily report keeps saying so until it is)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.clients.buffer_tokens import DbTokenStore, TokenCipher
from app.core.database import Database
from app.core.settings import Settings
from integrations import buffer
from integrations.discord import DiscordClient, Embed, WebhookMessage
from integrations.discord_text import literal
from integrations.errors import IntegrationError, NotConfigured

log = logging.getLogger(__name__)
RECONNECT_COLOUR = 0xE74C3C


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
            config = settings.discord_config()
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
