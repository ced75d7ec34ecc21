"""opsdesk side by side with its references, interleaved in one run (issue 15, "Speed under load").

    .venv/bin/python bench/compare.py [--only decide,enqueue,wal,cli,vector] [--quick] [--rounds 5]
                                      [--api-workers 1] [--service-workers-flag --api-workers]

Parts (each selectable with --only; all by default):
- decide:  a decision over HTTP (`opsdesk run` as a subprocess) at 1 and 16 clients against a bare
           `UPDATE` round trip and `decide_action` called directly, on the same server;
- enqueue: in-process submit of runnable no-op actions vs procrastinate's `defer` (4 clients), and
           the drain: opsdesk's executor vs a procrastinate worker;
- wal:     WAL bytes, transactions and row writes per table per executed action / job;
- cli:     `opsdesk --help` vs `procrastinate --help`, `opsdesk approvals list` with the service
           running, and `python -X importtime -c "import scheduler"`;
- vector:  search_memory's vector mode vs a plain `ORDER BY embedding <=> q LIMIT 10` at 100k rows,
           with recall@10 against an exact scan (bench/memory.py's data, built once and kept).

Every part alternates which system goes first in each round and reports the median of the rounds
(the machine is 2 shared cores). The decide and enqueue parts check in the database that nothing
was lost or done twice and fail loudly otherwise. procrastinate runs in bench/.venv-ref (made from
bench/requirements-ref.txt when missing), never in the project's environment. Results go to
bench/results/compare.json (a run with --only replaces those parts and keeps the others) and
bench/results/compare.md (the issue's table). See bench/README.md, "Side by side (issue 15)".
"""

# ruff: noqa: E402  (sys.path has to be fixed before anything imports the standard `queue`)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# `python bench/compare.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue` (psycopg_pool imports it): drop bench/ and put the project root there.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from rich.console import Console

from bench import compare_cli, compare_decide, compare_queue, compare_vector
from bench.compare_common import BenchFailure, Server, ensure_ref_venv, machine_load, run_ref, wait_for_no_sessions
from bench.compare_table import markdown
from bench.opsdesk_adapter import schema_sql, start_embedded
from bench.provenance import code_version

PARTS = ("decide", "enqueue", "wal", "cli", "vector")
SERVER_PARTS = ("decide", "enqueue", "wal", "cli")
TEMPLATES = {"opsdesk": "bench_opsdesk_template", "procrastinate": "bench_procrastinate_template"}
console = Console()


def parse_list(text: str, *, allowed: Sequence[str] | None = None) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items or (allowed is not None and any(item not in allowed for item in items)):
        raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(allowed or ['values'])}: {text!r}")
    return items


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        type=lambda t: parse_list(t, allowed=PARTS),
        default=list(PARTS),
        help=f"comma-separated parts to run (default: all of {','.join(PARTS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 2 rounds and small counts (vector: 10k rows unless --vector-rows)",
    )
    parser.add_argument("--rounds", type=int, help="rounds per part (default 5, quick 2)")
    parser.add_argument("--decide-clients", type=lambda t: [int(x) for x in parse_list(t)], default=[1, 16])
    parser.add_argument(
        "--decisions",
        type=int,
        help="decisions per round at 16 clients (default 1600, quick 160); "
        "a level of c clients makes c * (this / max(c, 4))",
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        default=1,
        help="API processes for `opsdesk run` (passed as OPSDESK_API_WORKERS and, where "
        "`opsdesk run --help` lists it, --service-workers-flag)",
    )
    parser.add_argument(
        "--service-workers-flag",
        default="--api-workers",
        help="the `opsdesk run` flag for API processes (default --api-workers)",
    )
    parser.add_argument("--enqueue-clients", type=int, default=4)
    parser.add_argument("--enqueue-jobs", type=int, help="jobs per round (default 2000, quick 300)")
    parser.add_argument("--wal-actions", type=int, help="actions per WAL run (default 500, quick 100)")
    parser.add_argument("--wal-runs", type=int, help="runs per WAL scenario (default 3, quick 1)")
    parser.add_argument("--cli-runs", type=int, help="runs per command per round (default 5, quick 2)")
    parser.add_argument("--vector-rows", type=int, help="rows (default 100000, quick 10000)")
    parser.add_argument("--vectors", choices=("minilm", "random"), default="minilm")
    parser.add_argument("--vector-queries", type=int, help="query vectors (default 200, quick 40)")
    parser.add_argument(
        "--vector-data",
        type=Path,
        default=Path("/tmp/opsdesk-bench-memory"),
        help="bench/memory.py's server folder (kept between runs)",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "compare.json")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 5)
    args.decisions = args.decisions or (160 if quick else 1600)
    args.enqueue_jobs = args.enqueue_jobs or (300 if quick else 2000)
    args.wal_actions = args.wal_actions or (100 if quick else 500)
    args.wal_runs = args.wal_runs or (1 if quick else 3)
    args.cli_runs = args.cli_runs or (2 if quick else 5)
    args.vector_rows = args.vector_rows or (10_000 if quick else 100_000)
    args.vector_queries = args.vector_queries or (40 if quick else 200)
    if args.api_workers < 1 or args.rounds < 1 or args.vector_rows % 10_000:
        parser.error("--api-workers and --rounds must be positive, --vector-rows a multiple of 10000")
    return args


def start_server(log: Callable[[str], None]) -> Server:
    folder = Path(tempfile.mkdtemp(prefix="odc", dir="/tmp"))  # short: the unix socket lives in it
    server = Server(start_embedded(folder), folder)
    with server.admin() as conn:
        for name in TEMPLATES.values():
            conn.execute(f"drop database if exists {name}")
            conn.execute(f"create database {name}")
    with psycopg.connect(server.uri(TEMPLATES["opsdesk"]), autocommit=True) as conn:
        conn.execute(schema_sql().encode())
    run_ref("schema", server.uri(TEMPLATES["procrastinate"]))
    for name in TEMPLATES.values():
        wait_for_no_sessions(server.uri(name))  # a template cannot be cloned while anyone is connected
    log(f"PostgreSQL {server.settings()['server_version']} in {folder} (unix socket); templates ready")
    return server


def stop_server(server: Server) -> None:
    server.handle.cleanup()
    shutil.rmtree(server.folder, ignore_errors=True)


def run_part(
    name: str, args: argparse.Namespace, server: Server | None, folder: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    if name == "decide":
        assert server is not None
        per_client = {c: max(args.decisions // max(c, 4), 5) for c in args.decide_clients}
        return compare_decide.run(
            server,
            TEMPLATES["opsdesk"],
            folder,
            rounds=args.rounds,
            clients_levels=args.decide_clients,
            per_client=per_client,
            api_workers=args.api_workers,
            workers_flag=args.service_workers_flag,
            log=log,
        )
    if name == "enqueue":
        assert server is not None
        return compare_queue.run_enqueue(
            server, TEMPLATES, rounds=args.rounds, clients=args.enqueue_clients, count=args.enqueue_jobs, log=log
        )
    if name == "wal":
        assert server is not None
        return compare_queue.run_wal(server, TEMPLATES, count=args.wal_actions, reps=args.wal_runs, log=log)
    if name == "cli":
        assert server is not None
        return compare_cli.run(
            server,
            TEMPLATES["opsdesk"],
            folder / "cli",
            args.out.parent,
            rounds=args.rounds,
            runs=args.cli_runs,
            log=log,
        )
    return compare_vector.run(
        args.vector_data,
        rows=args.vector_rows,
        vectors=args.vectors,
        queries=args.vector_queries,
        rounds=args.rounds,
        log=log,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)

    def log(message: str) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)

    reference = ensure_ref_venv(log)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() and set(args.only) != set(PARTS) else {}
    parts: dict[str, Any] = dict(previous.get("parts", {}))
    folder = Path(tempfile.mkdtemp(prefix="opsdesk-compare-"))
    server: Server | None = None
    server_settings: dict[str, str] | None = None
    load = machine_load()
    if load[0] > 1.0:
        log(f"load average {load[0]:.2f} before the run: other work shares the 2 cores; read the ratios")
    try:
        for name in PARTS:
            if name not in args.only:
                continue
            if name in SERVER_PARTS and server is None:
                server = start_server(log)
                server_settings = server.settings()
            if name == "vector" and server is not None:  # its own server: stop ours to give it the machine
                stop_server(server)
                server = None
            before = machine_load()
            began = datetime.now(UTC)
            result = run_part(name, args, server, folder, log)
            parts[name] = {
                **result,
                "generated_at": began.isoformat(timespec="seconds"),
                "seconds": round((datetime.now(UTC) - began).total_seconds(), 1),
                "load_average_before": before,
                "load_average_after": machine_load(),
                "code": code_version(schema_sql()),
            }
            if server_settings and name in SERVER_PARTS:
                parts[name]["postgres"] = server_settings
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(folder, ignore_errors=True)

    results = {
        "benchmark": "compare",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/compare.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "psycopg": psycopg.__version__,
            "reference_venv": reference,
            "load_average_at_start": load,
        },
        "parts": parts,
    }
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = markdown(parts)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    log(f"results written to {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailure as failure:
        Console(stderr=True).print(f"[bold red]BENCHMARK FAILED[/]: {failure}")
        sys.exit(1)
