"""Parts `enqueue` and `wal` of bench/compare.py: opsdesk's queue against procrastinate's.

enqueue (per round, alternating which system goes first; each on a fresh database of one server):
- opsdesk: `clients` threads submit LOW actions of a no-op kind through the in-process Python API
  (`ApprovalQueue.submit`: the policy, then `submit_action`; auto-run, so each is runnable at once,
  as a deferred job is), one shared pool of clients + 2 connections; then one `Executor` drains them.
- procrastinate (bench/.venv-ref): `clients` threads `defer` a no-op task through one app (its sync
  psycopg pool, clients + 2); then one worker (`run_worker(wait=False)`) drains them.
Both must then show every action / job succeeded once (the no-op counts its calls).

wal (per scenario, on a fresh database, one client, autovacuum off, after a CHECKPOINT and a
warm-up; see measure_writes): the WAL
written (pg_current_wal_lsn() before and after, pg_stat_wal's records and full-page images), the
transactions committed, and each table's inserted / updated / deleted rows, divided by the number
of actions or jobs:
- opsdesk MEDIUM: submit -> approve -> execute;  opsdesk LOW: submit (auto-run) -> execute;
- procrastinate: defer -> run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.compare_common import (
    BenchFailure,
    CpuMeter,
    Server,
    alternate,
    median_of,
    percentiles,
    ratio,
    run_clients,
    run_ref,
    wait_for_no_sessions,
    wal_diff,
    write_counters,
)
from bench.opsdesk_adapter import OpsdeskQueue


def check_opsdesk_ran(uri: str, count: int, ran: int, calls: int, *, total: int | None = None) -> None:
    """This drain ran `count` actions, each once; the database holds `total` (default `count`),
    every one succeeded on its first attempt with one `finished` audit row."""
    total = count if total is None else total
    with psycopg.connect(uri, autocommit=True) as conn:
        statuses = dict(conn.execute("select status, count(*) from actions group by 1").fetchall())
        twice = conn.execute("select count(*) from actions where attempts <> 1").fetchone()[0]  # type: ignore[index]
        finished = conn.execute(
            "select count(*), count(distinct action_id) from audit_log where event = 'finished'"
        ).fetchone()
    problems = []
    if statuses != {"succeeded": total}:
        problems.append(f"actions by status {statuses}, expected {{'succeeded': {total}}}")
    if twice or ran != count or calls != count or finished != (total, total):
        problems.append(
            f"{twice} actions not run exactly once; executor ran {ran}, the handler was called "
            f"{calls} times (expected {count}); {finished} finished audit rows / actions "
            f"(expected {total})"
        )
    if problems:
        raise BenchFailure("opsdesk exactly-once check failed:\n  " + "\n  ".join(problems))


def check_procrastinate_ran(uri: str, count: int, calls: int, *, total: int | None = None) -> None:
    total = count if total is None else total
    with psycopg.connect(uri, autocommit=True) as conn:
        statuses = {
            str(k): v for k, v in conn.execute("select status, count(*) from procrastinate_jobs group by 1").fetchall()
        }
    if statuses != {"succeeded": total} or calls != count:
        raise BenchFailure(
            f"procrastinate exactly-once check failed: jobs by status {statuses} (expected "
            f"{total} succeeded), the task was called {calls} times (expected {count})"
        )


def opsdesk_enqueue(
    uri: str, clients: int, count: int, meter: CpuMeter | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Enqueue `count` LOW no-op actions from `clients` threads, then drain them with one worker;
    with `meter`, each phase also reports CPU per action (bench/leases.py reads PostgreSQL's)."""
    queue = OpsdeskQueue(uri, pool_size=clients + 2)
    try:
        queue.warm(clients)
        samples: list[list[float]] = [[] for _ in range(clients)]

        def submit(k: int) -> None:
            for i in range(k, count, clients):
                began = time.perf_counter()
                _, status, tier = queue.submit(i, medium=False)
                samples[k].append(time.perf_counter() - began)
                if (status, tier) != ("approved", "LOW"):
                    raise BenchFailure(f"a LOW no-op submit came back {status}/{tier}, expected approved/LOW")

        before = meter.read() if meter is not None else None
        seconds = run_clients(clients, submit)
        enqueue = {
            "count": count,
            "seconds": round(seconds, 3),
            "per_second": round(count / seconds, 1),
            **percentiles([s for per in samples for s in per]),
            **_cpu_per_action(meter, before, count),
        }
        before = meter.read() if meter is not None else None
        began = time.perf_counter()
        ran = queue.drain("bench-drain")
        seconds = time.perf_counter() - began
        drain = {
            "count": count,
            "seconds": round(seconds, 3),
            "per_second": round(count / seconds, 1),
            **_cpu_per_action(meter, before, count),
        }
        calls = queue.counter.calls
    finally:
        queue.close()
    check_opsdesk_ran(uri, count, ran, calls)
    return enqueue, drain


def _cpu_per_action(meter: CpuMeter | None, before: dict[str, float] | None, count: int) -> dict[str, float]:
    return {} if meter is None or before is None else CpuMeter.per_op(before, meter.read(), count)


def procrastinate_enqueue(uri: str, clients: int, count: int) -> tuple[dict[str, float], dict[str, float]]:
    answer = run_ref("enqueue", uri, clients=clients, count=count)
    enqueue = {
        "count": count,
        "seconds": round(answer["seconds"], 3),
        "per_second": round(count / answer["seconds"], 1),
        **percentiles(answer["latencies"]),
    }
    drained = run_ref("drain", uri, count=count)
    check_procrastinate_ran(uri, count, drained["count"])
    return enqueue, {
        "count": count,
        "seconds": round(drained["seconds"], 3),
        "per_second": round(count / drained["seconds"], 1),
    }


def run_enqueue(
    server: Server, templates: dict[str, str], *, rounds: int, clients: int, count: int, log: Callable[[str], None]
) -> dict[str, Any]:
    systems = ("opsdesk", "procrastinate")
    enqueue: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    drain: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    for round_no in range(-1, rounds):  # round -1 warms up and is not kept
        for system in alternate(systems, round_no):
            uri = server.fresh(f"bench_enqueue_{system}", templates[system])
            size = count if round_no >= 0 else max(count // 10, 100)
            runner = opsdesk_enqueue if system == "opsdesk" else procrastinate_enqueue
            queued, drained = runner(uri, clients, size)
            server.drop(f"bench_enqueue_{system}")
            if round_no >= 0:
                enqueue[system].append(queued)
                drain[system].append(drained)
        if round_no >= 0:
            log(
                f"enqueue round {round_no + 1}/{rounds}: opsdesk {enqueue['opsdesk'][-1]['per_second']:,.0f}/s, "
                f"procrastinate {enqueue['procrastinate'][-1]['per_second']:,.0f}/s; drain "
                f"{drain['opsdesk'][-1]['per_second']:,.0f}/s vs {drain['procrastinate'][-1]['per_second']:,.0f}/s"
            )
    return {
        "config": {
            "rounds": rounds,
            "clients": clients,
            "jobs_per_round": count,
            "opsdesk": "ApprovalQueue.submit of LOW (auto-run) actions of a no-op kind, in-process, "
            "then one Executor.run_until_idle (batch 10)",
            "procrastinate": "task.defer of an async no-op task (sync app, PsycopgConnector), then "
            "one worker run_worker(wait=False), concurrency 1",
        },
        "enqueue": {s: {"median": median_of(r), "rounds": r} for s, r in enqueue.items()},
        "drain": {s: {"median": median_of(r), "rounds": r} for s, r in drain.items()},
    }


# ------------------------------------------------------------------------------------------------
# WAL and row writes
# ------------------------------------------------------------------------------------------------
def opsdesk_workload(uri: str, count: int, total: int, *, medium: bool) -> None:
    queue = OpsdeskQueue(uri, pool_size=2)
    try:
        for i in range(count):
            action_id, status, _ = queue.submit(total - count + i, medium=medium)
            if medium and queue.approve(action_id, "bench-reviewer") != "approved":
                raise BenchFailure(f"approving {action_id} did not approve it")
            if not medium and status != "approved":
                raise BenchFailure(f"a LOW submit came back {status}, expected approved (auto-run)")
        ran = queue.drain("bench-wal")
        calls = queue.counter.calls
    finally:
        queue.close()
    check_opsdesk_ran(uri, count, ran, calls, total=total)


def procrastinate_workload(uri: str, count: int, total: int) -> None:
    run_ref("enqueue", uri, clients=1, count=count)
    check_procrastinate_ran(uri, count, run_ref("drain", uri, count=count)["count"], total=total)


Workload = Callable[[str, int, int], None]  # (database URI, actions now, actions in the database after)


def measure_writes(server: Server, template: str, name: str, count: int, workload: Workload) -> dict[str, Any]:
    """One scenario on a fresh database: a CHECKPOINT, a warm-up of count / 5 actions (not counted:
    the first change of each page after a checkpoint logs the whole page, and a busy queue pays
    that once per checkpoint, not per action), then `count` actions between two counter readings."""
    uri = server.fresh(name, template)
    warm_up = max(count // 5, 10)
    with server.admin() as conn:
        conn.execute("checkpoint")
    workload(uri, warm_up, warm_up)
    wait_for_no_sessions(uri)
    before = write_counters(uri)
    workload(uri, count, warm_up + count)
    wait_for_no_sessions(uri)  # each backend flushes its counters as it exits
    diff = wal_diff(uri, before, write_counters(uri))
    with psycopg.connect(uri, autocommit=True) as conn:
        left = (
            {
                "discord_notifications by status": dict(
                    conn.execute("select status, count(*) from discord_notifications group by 1").fetchall()
                )
            }
            if template.startswith("bench_opsdesk")
            else {}
        )
    server.drop(name)
    per = {
        "wal_bytes": round(diff["wal_bytes"] / count),
        "wal_records": round(diff["wal_records"] / count, 2),
        "wal_fpi": round(diff["wal_fpi"] / count, 3),
        "transactions": round(diff["commits"] / count, 2),
        "row_writes": round(
            sum(sum(v for k, v in t.items() if k != "n_tup_hot_upd") for t in diff["tables"].values()) / count, 2
        ),
    }
    tables = {
        table: {key: round(value / count, 3) for key, value in counters.items() if value}
        for table, counters in sorted(diff["tables"].items())
    }
    return {
        "per_action": per,
        "tables_per_action": tables,
        "totals": diff,
        "warm_up_actions": warm_up,
        "afterwards": left,
    }


def run_wal(
    server: Server, templates: dict[str, str], *, count: int, reps: int, log: Callable[[str], None]
) -> dict[str, Any]:
    scenarios: dict[str, tuple[str, Workload]] = {
        "opsdesk MEDIUM submit -> approve -> execute": (
            templates["opsdesk"],
            lambda uri, n, total: opsdesk_workload(uri, n, total, medium=True),
        ),
        "opsdesk LOW submit (auto-run) -> execute": (
            templates["opsdesk"],
            lambda uri, n, total: opsdesk_workload(uri, n, total, medium=False),
        ),
        "procrastinate defer -> run": (templates["procrastinate"], procrastinate_workload),
    }
    with server.admin() as conn:  # an autovacuum run inside a window would be counted as ours
        conn.execute("alter system set autovacuum = off")
        conn.execute("select pg_reload_conf()")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
    try:
        for rep in range(reps):
            for name in alternate(list(scenarios), rep):
                template, workload = scenarios[name]
                runs[name].append(measure_writes(server, template, "bench_wal", count, workload))
                log(f"wal {name}: {runs[name][-1]['per_action']}")
    finally:
        with server.admin() as conn:
            conn.execute("alter system reset autovacuum")
            conn.execute("select pg_reload_conf()")
    out: dict[str, Any] = {}
    for name, measured in runs.items():
        middle = sorted(measured, key=lambda m: m["per_action"]["wal_bytes"])[len(measured) // 2]
        out[name] = {
            "median_per_action": {
                key: statistics.median(m["per_action"][key] for m in measured) for key in measured[0]["per_action"]
            },
            "run_nearest_median": middle,
            "per_action_each_run": [m["per_action"] for m in measured],
        }
    reference = out["procrastinate defer -> run"]["median_per_action"]
    for name in scenarios:
        mine = out[name]["median_per_action"]
        out[name]["ratio_to_procrastinate"] = {key: ratio(mine[key], reference[key]) for key in mine}
    return {
        "config": {
            "actions_per_run": count,
            "runs": reps,
            "clients": 1,
            "notes": "autovacuum off; per run a fresh database, a CHECKPOINT and a warm-up of "
            "actions / 5 before the counted actions; transactions include the bench's few "
            "read-only ones, and procrastinate's its worker's start-up",
        },
        "scenarios": out,
    }
