"""An executor in its own process, for the multi-process and crash tests:
`python -m tests.worker_process DATABASE_URL WORKER_ID [WEBHOOK_URL]` drains the queue and exits."""

from __future__ import annotations

import logging
import sys

from app.approvals.executor import Executor
from app.core.database import Database, PostgresTransport
from tests.conftest import make_settings


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    database_url, worker_id = sys.argv[1], sys.argv[2]
    webhook_url = sys.argv[3] if len(sys.argv) > 3 else None
    settings = make_settings(
        database_url=database_url, webhook_post_url=webhook_url, executor_lease_seconds=60, executor_batch_size=5
    )
    db = Database(PostgresTransport(database_url, max_size=2))
    executor = Executor(db, settings, worker_id=worker_id)
    try:
        ran = executor.run_until_idle()
    finally:
        executor.close()
        db.close()
    print(f"ran {ran}", flush=True)


if __name__ == "__main__":
    main()
