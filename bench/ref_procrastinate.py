"""The reference side of bench/compare.py: procrastinate, run from the bench's own virtualenv.

    bench/.venv-ref/bin/python bench/ref_procrastinate.py schema  --dsn DSN
    bench/.venv-ref/bin/python bench/ref_procrastinate.py enqueue --dsn DSN --clients 4 --count 2000
    bench/.venv-ref/bin/python bench/ref_procrastinate.py drain   --dsn DSN --count 2000

This file imports procrastinate, psycopg and the standard library only: it runs in bench/.venv-ref
(bench/requirements-ref.txt), never in the project's environment, and opsdesk is not installed
there. Each command prints one JSON object on its last line of stdout.

- schema:  procrastinate's own schema (`App.schema_manager.apply_schema()`), for a template database.
- enqueue: `--clients` threads share one app (its sync psycopg pool, max_size clients + 2, as the
  opsdesk side) and `defer` their share of `--count` jobs of a no-op task, each call timed.
- drain:   one worker (`run_worker(wait=False)`: it stops once the queue is empty; concurrency 1,
  the default) runs every job; the task counts its calls so a job run twice or never is seen.
"""

# ruff: noqa: E402  (sys.path has to be fixed before anything imports the standard `queue`)
from __future__ import annotations

import sys
from pathlib import Path

# the script's folder, bench/, holds queue.py, which would shadow the standard library's `queue`
# (psycopg_pool imports it): drop it from the path
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import threading
import time
from typing import Any

import procrastinate

CALLS = {"count": 0}
CALLS_LOCK = threading.Lock()


def make_app(dsn: str, pool_size: int) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=pool_size))

    # async: the worker awaits it on its event loop, procrastinate's cheapest way to run a task (a
    # sync task would go through a thread); the reference at its best
    @app.task(name="bench_noop")
    async def bench_noop(i: int) -> None:
        with CALLS_LOCK:
            CALLS["count"] += 1

    return app


def schema(dsn: str) -> dict[str, Any]:
    app = make_app(dsn, 2)
    with app.open():
        app.schema_manager.apply_schema()
    return {"schema": "applied", "procrastinate": procrastinate.__version__}


def enqueue(dsn: str, clients: int, count: int) -> dict[str, Any]:
    app = make_app(dsn, clients + 2)
    task = app.tasks["bench_noop"]
    timings: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        start.wait()
        try:
            for i in range(k, count, clients):
                began = time.perf_counter()
                task.defer(i=i)
                timings[k].append(time.perf_counter() - began)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with app.open():
        # one connection per client before timing, as the opsdesk side warms its pool
        warm = threading.Barrier(clients)

        def hold() -> None:
            with app.connector.get_sync_connector().pool.connection():  # type: ignore[attr-defined]
                warm.wait(timeout=60)

        holders = [threading.Thread(target=hold) for _ in range(clients)]
        for thread in holders:
            thread.start()
        for thread in holders:
            thread.join()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
    if errors:
        raise SystemExit(f"{len(errors)} client(s) failed; first: {errors[0]!r}")
    return {"count": count, "seconds": seconds, "latencies": [t for per in timings for t in per]}


def drain(dsn: str, count: int) -> dict[str, Any]:
    app = make_app(dsn, 4)
    began = time.perf_counter()
    app.run_worker(wait=False, install_signal_handlers=False)
    seconds = time.perf_counter() - began
    return {"count": CALLS["count"], "seconds": seconds, "expected": count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=("schema", "enqueue", "drain"))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "schema":
        result = schema(args.dsn)
    elif args.command == "enqueue":
        result = enqueue(args.dsn, args.clients, args.count)
    else:
        result = drain(args.dsn, args.count)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
