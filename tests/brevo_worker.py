"""An executor in its own process that sends email through a (fake) Brevo, for the crash tests:
`python -m tests.brevo_worker DATABASE_URL BREVO_URL` drains the queue and exits."""

from __future__ import annotations

import sys

from app.approvals.executor import Executor
from app.core.database import Database, PostgresTransport
from tests.conftest import make_settings
from tests.fake_brevo import API_KEY, SENDER


def main() -> None:
    database_url, brevo_url = sys.argv[1], sys.argv[2]
    settings = make_settings(
        database_url=database_url,
        brevo_api_key=API_KEY,
        brevo_sender_email=SENDER,
        brevo_base_url=brevo_url,
        executor_lease_seconds=60,
    )
    db = Database(PostgresTransport(database_url, max_size=2))
    executor = Executor(db, settings, worker_id="doomed")
    try:
        executor.run_until_idle()
    finally:
        executor.close()
        db.close()


if __name__ == "__main__":
    main()
