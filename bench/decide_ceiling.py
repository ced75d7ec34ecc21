"""The HTTP ceiling of a decision: the API with its database call answered at once, beside the real one.

    .venv/bin/python bench/decide_ceiling.py [--clients 16] [--decisions 3200] [--rounds 3]

bench/compare.py's `decide` part measures a decision over HTTP against a bare `UPDATE`. On two
shared cores a closed-loop client's latency is about (clients x CPU per request) / cores, so this
asks what the service alone costs: the same `opsdesk` app (create_app, uvicorn as `opsdesk run`
configures it, one process) serves in a subprocess, once as it is ("real") and once with the
decision's group-commit call answered in the process with a stored action ("no database": the
route, its checks, the pydantic models, the access log and uvicorn all still run). The same client
threads as compare.py's drive both, interleaved per round; CPU per decision is read from /proc.
"""

# ruff: noqa: E402  (sys.path has to be fixed before anything imports the standard `queue`)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from bench import compare
from bench.compare_common import CpuMeter, alternate, median_of
from bench.compare_decide import http_round, submit_pending
from bench.compare_service import API_TOKEN
from bench.opsdesk_adapter import OpsdeskQueue

VARIANTS = ("real", "no_database")


def serve(uri: str, port: int, variant: str) -> None:
    """The subprocess: the app on `port`; with `no_database` the decision's call answers at once."""
    import uvicorn
    from pydantic import SecretStr

    from app.approvals.batch import DecisionBatch
    from app.approvals.queue import ApprovalQueue
    from app.core.database import Database, PostgresTransport
    from app.core.log_setup import configure_logging
    from app.runtime.service import server_config
    from app.web import create_app
    from bench.opsdesk_adapter import bench_settings

    settings = bench_settings(uri).model_copy(update={"ops_api_token": SecretStr(API_TOKEN)})
    configure_logging(settings.log_level)
    db = Database(PostgresTransport(uri, max_size=20))
    if variant == "no_database":
        stored = ApprovalQueue(db, settings).get(UUID(sys.argv[5]))

        async def answered(self: DecisionBatch, action_id: UUID, **_: Any) -> dict[str, Any]:
            return {**stored, "id": str(action_id), "status": "approved"}

        DecisionBatch.decide = answered  # type: ignore[method-assign]
    uvicorn.Server(server_config(settings, create_app(settings, db), host="127.0.0.1", port=port)).run()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int) -> None:
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the service on {port} did not answer")


@dataclass
class Served:
    """A variant's service, as compare_decide.http_round drives it."""

    port: int

    @staticmethod
    def headers() -> dict[str, str]:
        return {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--decisions", type=int, default=3200, help="per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v in VARIANTS]
    server = compare.start_server(print)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        # a database each: nothing one variant leaves (pending actions, dead rows) weighs on the other
        uris = {variant: server.fresh(f"bench_ceiling_{variant}", compare.TEMPLATES["opsdesk"]) for variant in variants}
        queues = {variant: OpsdeskQueue(uri, pool_size=6) for variant, uri in uris.items()}
        ports = {variant: free_port() for variant in variants}
        for variant in variants:
            stored = submit_pending(queues[variant], 1, 0)[0]
            command = [sys.executable, __file__, "--serve", uris[variant], str(ports[variant]), variant, str(stored)]
            processes[variant] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            wait_for(ports[variant])
        results: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
        serial = 1
        for round_no in range(-1, args.rounds):  # round -1 warms up and is not kept
            for variant in alternate(variants, round_no):
                count = args.decisions if round_no >= 0 else 200
                ids = submit_pending(queues[variant], count, serial)
                serial += count
                meter = CpuMeter.of(server, group=processes[variant].pid)
                numbers = http_round(Served(ports[variant]), ids, args.clients, meter)
                if round_no >= 0:
                    results[variant].append(numbers)
                    print(f"round {round_no + 1} {variant}: {numbers}")
        for queue in queues.values():
            queue.close()
    finally:
        for process in processes.values():
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        compare.stop_server(server)
    print(f"\n{args.clients} clients, median of {args.rounds} rounds:")
    print("| variant | per second | p50 / p95 / p99 ms | CPU per decision: service / PostgreSQL / client us |")
    print("|---|---:|---:|---:|")
    for variant in variants:
        m = median_of(results[variant])
        print(
            f"| {variant} | {m['per_second']:,.0f} | {m['p50']:.2f} / {m['p95']:.2f} / {m['p99']:.2f} | "
            f"{m['cpu_us_service']:,.0f} / {m['cpu_us_postgres']:,.0f} / {m['cpu_us_client']:,.0f} |"
        )


if __name__ == "__main__":
    main()
