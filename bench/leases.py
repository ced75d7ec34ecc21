"""What schema.sql's one lease lifecycle (§5) costs the queue: today's file against an earlier
commit's, side by side in one run, on one server.

    python bench/leases.py --reference 0626fe0 [--rounds 5] [--jobs 2000] [--calls 2000]

The Python is the same for both (the SQL functions kept their names and parameters); only the
schema.sql each database was made from differs. Per round, alternating which goes first, each on a
fresh database cloned from its template:

- enqueue and drain: as bench/compare.py's `enqueue` part for opsdesk (4 threads submit LOW actions
  of a no-op kind, then one Executor drains them: recover_expired_leases, claim_actions,
  finish_action), checked exactly-once;
- heartbeats: one connection claims actions, then calls renew_action_lease and mark_dispatched
  (each a token-checked lease write) for every one, timed per call.

Besides wall-clock rates, each phase reports the PostgreSQL server's CPU time per action or call
(bench/compare_common.py's CpuMeter): on a machine other work shares, wall time moves with their load and
CPU time much less. The median of the rounds is reported for each, with today's / reference ratios.
"""

# ruff: noqa: E402  (sys.path has to be fixed before anything imports the standard `queue`)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# `python bench/leases.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue` module (psycopg imports it). Drop bench/ and put the project root on it.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from bench.compare_common import (
    BenchFailure,
    CpuMeter,
    Server,
    alternate,
    machine_load,
    median_of,
    percentiles,
    ratio,
    wait_for_no_sessions,
)
from bench.compare_queue import opsdesk_enqueue
from bench.opsdesk_adapter import schema_sql, start_embedded
from bench.provenance import code_version

SYSTEMS = ("today", "reference")


def reference_schema(ref: str) -> tuple[str, str]:
    """(full commit, schema.sql at that commit)."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    text = subprocess.run(
        ["git", "show", f"{ref}:schema.sql"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return sha.strip(), text


def heartbeats(uri: str, calls: int, meter: CpuMeter) -> dict[str, dict[str, float]]:
    """`calls` approved actions claimed at once, then each renewed and marked dispatched."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(  # LOW and auto-run: approved at once
            "select submit_action(%s || jsonb_build_object('summary', 'heartbeat ' || i), 'LOW', '[]', true,"
            " 3600, 5, 'bench', null) from generate_series(1, %s) i",
            (Jsonb({"agent": "bench", "kind": "note.record", "payload": {"body": "x"}, "impact": {}}), calls),
        )
        claimed = conn.execute(
            "select claim_actions(p_worker => 'bench', p_lease_seconds => 600, p_limit => %s)", (calls,)
        ).fetchone()[0]  # type: ignore[index]
        if len(claimed) != calls:
            raise BenchFailure(f"claimed {len(claimed)} of {calls} actions")
        measured: dict[str, dict[str, float]] = {}
        for name, statement in (
            ("renew_action_lease", "select renew_action_lease(%s, %s, 600)"),
            ("mark_dispatched", "select mark_dispatched(%s, %s)"),
        ):
            timings = []
            before = meter.read()
            for row in claimed:
                began = time.perf_counter()
                conn.execute(statement, (row["id"], row["attempt_token"]))
                timings.append(time.perf_counter() - began)
            measured[name] = {**percentiles(timings), **CpuMeter.per_op(before, meter.read(), calls)}
        dispatched = conn.execute("select count(*) from actions where dispatched_at is not null").fetchone()[0]  # type: ignore[index]
        if dispatched != calls:
            raise BenchFailure(f"{dispatched} of {calls} actions marked dispatched")
    return measured


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reference", default="main", help="the commit whose schema.sql is the reference")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4, help="enqueue threads (default 4)")
    parser.add_argument("--jobs", type=int, default=2000, help="actions enqueued and drained per round")
    parser.add_argument("--calls", type=int, default=2000, help="heartbeat calls of each kind per round")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "leases.json")
    args = parser.parse_args(argv)
    reference_commit, reference_sql = reference_schema(args.reference)
    schemas = {"today": schema_sql(), "reference": reference_sql}
    folder = Path(tempfile.mkdtemp(prefix="odl", dir="/tmp"))  # short: the unix socket lives in it
    server = Server(start_embedded(folder), folder)
    meter = CpuMeter.of(server)
    load_before = machine_load()
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        s: {"enqueue": [], "drain": [], "renew": [], "dispatched": []} for s in SYSTEMS
    }
    try:
        for system, text in schemas.items():
            with server.admin() as conn:
                conn.execute(f"create database bench_leases_{system}")
            with psycopg.connect(server.uri(f"bench_leases_{system}"), autocommit=True) as conn:
                conn.execute(text.encode())
            wait_for_no_sessions(server.uri(f"bench_leases_{system}"))
        for round_no in range(-1, args.rounds):  # round -1 warms up and is not kept
            for system in alternate(SYSTEMS, round_no):
                template = f"bench_leases_{system}"
                uri = server.fresh("bench_leases_run", template)
                size = args.jobs if round_no >= 0 else max(args.jobs // 10, 100)
                enqueue, drain = opsdesk_enqueue(uri, args.clients, size, meter)
                server.drop("bench_leases_run")
                uri = server.fresh("bench_leases_run", template)
                beats = heartbeats(uri, args.calls if round_no >= 0 else 100, meter)
                server.drop("bench_leases_run")
                if round_no >= 0:
                    kept = results[system]
                    kept["enqueue"].append(enqueue)
                    kept["drain"].append(drain)
                    renew, dispatched = beats["renew_action_lease"], beats["mark_dispatched"]
                    kept["renew"].append(renew)
                    kept["dispatched"].append(dispatched)
                    print(
                        f"round {round_no + 1}/{args.rounds} {system:9}: enqueue {enqueue['per_second']:7.1f}/s "
                        f"({enqueue['cpu_us_postgres']:.0f} us server CPU each), drain {drain['per_second']:7.1f}/s "
                        f"({drain['cpu_us_postgres']:.0f} us), renew p50 {renew['p50']:.3f} ms "
                        f"({renew['cpu_us_postgres']:.0f} us), dispatched p50 {dispatched['p50']:.3f} ms "
                        f"({dispatched['cpu_us_postgres']:.0f} us), load {machine_load()[0]}",
                        flush=True,
                    )
        settings = server.settings()
    finally:
        server.handle.cleanup()
        shutil.rmtree(folder, ignore_errors=True)

    medians = {s: {part: median_of(rounds) for part, rounds in results[s].items()} for s in SYSTEMS}
    today, reference = medians["today"], medians["reference"]
    ratios = {
        f"{part} {measure}": ratio(today[part][measure], reference[part][measure])
        for part, measures in (
            ("enqueue", ("per_second", "p50", "cpu_us_postgres")),
            ("drain", ("per_second", "cpu_us_postgres")),
            ("renew", ("p50", "cpu_us_postgres")),
            ("dispatched", ("p50", "cpu_us_postgres")),
        )
        for measure in measures
    }
    print(json.dumps({"medians": medians, "today / reference": ratios}, indent=2))
    out = {
        "benchmark": "leases",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": vars(args) | {"out": str(args.out)},
        "code": code_version(schemas["today"]),
        "reference_commit": reference_commit,
        "server": settings,
        "load_average_before": load_before,
        "load_average_after": machine_load(),
        "medians": medians,
        "today / reference": ratios,
        "rounds": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailure as failure:
        print(f"BENCHMARK FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
