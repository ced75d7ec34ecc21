"""Opening the database as every opsdesk process does: the core's `open_database` (transport,
schema), then what the domains check at start-up: the embeddings provider against the model memory
was embedded with (app.memory.store.check_embeddings)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.core import database_setup
from app.core.database import Database
from app.core.settings import Settings
from app.memory.store import check_embeddings


@contextmanager
def open_database(settings: Settings, *, init_schema: bool = False, check_memory: bool = True) -> Iterator[Database]:
    """Open the configured database for the life of the block, checked. Only `opsdesk memory
    reindex`, which changes memory's embeddings model, opens without `check_memory`."""
    with database_setup.open_database(settings, init_schema=init_schema) as db:
        if check_memory:
            check_embeddings(db, settings)
        yield db
