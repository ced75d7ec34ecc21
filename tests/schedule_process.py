"""One scheduler instance in its own process, for the several-processes test:
`python -m tests.schedule_process DATABASE_URL INSTANCE SKEW_SECONDS DISCORD_WEBHOOK_URL DATA_DIR`.

The instance builds the real job list and ticks on a simulated clock the test drives: each line on
stdin is a minute (ISO 8601); the instance sets its clock to that minute plus its skew, ticks, and
answers `ticked` once done. At end of input it prints `calls <json>`: every (job, scheduled time)
its jobs were called for. The agents and the every-minute jobs are only counted (their work is
tested where it lives); the others, the report included, do their real work."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timedelta
from pathlib import Path

from agents import REGISTRY
from app.core.database import Database, PostgresTransport
from app.notifications.sender import NotificationSender
from app.schedule.jobs import build_jobs
from app.schedule.runs import Schedule
from tests.conftest import make_settings
from tests.schedule_support import Recorder, SimClock

COUNTED_ONLY = frozenset(
    {"expire_approvals", "recover_leases", "discord_reminders", "agent_sales", "agent_support", "agent_marketing"}
)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    database_url, instance, skew, webhook_url, data_dir = sys.argv[1:6]
    settings = make_settings(
        database_url=database_url, opsdesk_data_dir=Path(data_dir), discord_webhook_url=webhook_url, brevo_dry_run=True
    )
    db = Database(PostgresTransport(database_url, max_size=4))
    notifications = NotificationSender(db, settings)
    recorder = Recorder()
    jobs = recorder.wrap(
        build_jobs(db, settings, worker_id=instance, agents=REGISTRY, notifications=notifications),
        record_only=COUNTED_ONLY,
    )
    offset = timedelta(seconds=float(skew))
    clock: SimClock | None = None
    schedule: Schedule | None = None
    try:
        for line in sys.stdin:
            now = datetime.fromisoformat(line.strip()) + offset
            if schedule is None or clock is None:
                clock = SimClock(now)
                schedule = Schedule(db, jobs, instance=instance, clock=clock)
            clock.now = now
            schedule.tick()
            print("ticked", flush=True)
    finally:
        notifications.close()
        db.close()
    calls = [[job, moment.isoformat()] for (job, moment), count in recorder.calls.items() for _ in range(count)]
    print(f"calls {json.dumps(calls)}", flush=True)


if __name__ == "__main__":
    main()
