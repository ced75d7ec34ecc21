"""One OS process of the several-process refresh test (tests/test_buffer_tokens.py): it waits at
the barrier with the others, gets Buffer's access token through the database-serialised refresh,
posts once with it, and reports what it saw."""

from __future__ import annotations

import hashlib
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from pydantic import SecretStr

from app.clients.buffer_tokens import DbTokenStore, TokenCipher
from app.clients.rate_slots import DbRateSlots
from app.core.database import Database, PostgresTransport
from integrations.buffer import BufferClient, BufferConfig
from integrations.buffer_models import PostRequest
from integrations.buffer_oauth import BufferOAuth, BufferOAuthConfig, OAuthTokens


def refresh_and_post(
    n: int,
    database_url: str,
    key: str,
    oauth: dict[str, str],
    api_url: str,
    channel_id: str,
    barrier: Barrier,
    out: Queue,  # type: ignore[type-arg]
) -> None:
    db = Database(PostgresTransport(database_url, max_size=2))
    store = DbTokenStore(db, TokenCipher(SecretStr(key)))
    auth = BufferOAuth(BufferOAuthConfig.model_validate(oauth))
    tokens = OAuthTokens(auth, store)
    client = BufferClient(
        BufferConfig(api_url=api_url, organization_id="unused", timeout_seconds=10),
        tokens=tokens,
        slots=DbRateSlots(db),
    )
    try:
        barrier.wait(60)
        token = tokens.access_token()
        post = client.create_post(PostRequest(channel_id=channel_id, text=f"from process {n}"))
        out.put({"n": n, "token": hashlib.sha256(token.encode()).hexdigest(), "post": post.id})
    except Exception as exc:  # the parent asserts on what every process reports
        out.put({"n": n, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        client.close()
        auth.close()
        db.close()
