"""Part `decide` of bench/compare.py: a decision over HTTP against the database's floor.

Per round and per concurrency level (1 and 16 clients by default), in alternating order:
- opsdesk_http: `POST /approvals/{id}/decision` (Bearer, JSON approve) to `opsdesk run`, each client
  on its own kept-alive connection, approving distinct pending MEDIUM `note.record` actions;
- decide_action: the same SQL function called by name through psycopg, one autocommit connection
  per client (the database's part of a decision, without the service);
- floor_update: a bare `UPDATE ... SET n = n + 1` of one row per client, autocommit (the floor:
  one round trip and one commit).
Afterwards the database must show every decided action approved once, with one `decided` audit
row, and the floor's counters must add up; anything else fails the run.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import psycopg

from bench.compare_common import (
    BenchFailure,
    CpuMeter,
    Server,
    alternate,
    median_of,
    percentiles,
    run_clients,
)
from bench.compare_service import Service
from bench.opsdesk_adapter import OpsdeskQueue

SYSTEMS = ("opsdesk_http", "decide_action", "floor_update")
DECIDE_SQL = (
    "select decide_action(p_id => %s, p_decision => 'approve', p_actor => %s, p_reason => null, "
    "p_modifications => null, p_expected_hash => null, p_request_id => null, p_channel => 'api')"
)
FLOOR_SQL = "update floor_rows set n = n + 1 where id = %s"
MAX_CLIENTS = 64


def connect(uri: str) -> psycopg.Connection:
    # as opsdesk's pool opens them: autocommit, no server-side prepared statements
    return psycopg.connect(uri, autocommit=True, prepare_threshold=None)


def submit_pending(queue: OpsdeskQueue, count: int, start: int) -> list[UUID]:
    """`count` pending MEDIUM actions (four submitting threads; not timed)."""
    ids: list[UUID | None] = [None] * count

    def submit(k: int) -> None:
        for i in range(k, count, 4):
            action_id, status, tier = queue.submit(start + i, medium=True, kind="note.record")
            if (status, tier) != ("pending", "MEDIUM"):
                raise BenchFailure(f"a prepared action came back {status}/{tier}, expected pending/MEDIUM")
            ids[i] = action_id

    run_clients(4, submit)
    return [action_id for action_id in ids if action_id is not None]


def timed_clients(
    clients: int, count: int, call: Callable[[int, int], None], meter: CpuMeter | None = None
) -> dict[str, float]:
    """`call(k, i)` for i = k, k + clients, ... on `clients` threads; latency, throughput and (with
    `meter`) the CPU each part used per call."""
    samples: list[list[float]] = [[] for _ in range(clients)]

    def work(k: int) -> None:
        for i in range(k, count, clients):
            began = time.perf_counter()
            call(k, i)
            samples[k].append(time.perf_counter() - began)

    before = meter.read() if meter is not None else None
    seconds = run_clients(clients, work)
    cpu = CpuMeter.per_op(before, meter.read(), count) if meter is not None and before is not None else {}
    return {
        "count": count,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        **percentiles([s for per in samples for s in per]),
        **cpu,
    }


class HttpTarget(Protocol):
    """What a round of decisions over HTTP needs of a service (compare_service.Service, or
    bench/decide_ceiling.py's served variants)."""

    @property
    def port(self) -> int: ...

    def headers(self) -> dict[str, str]: ...


class KeptAlive:
    """One kept-alive HTTP/1.1 connection to 127.0.0.1: a request out, one response with a
    Content-Length back. The clients share the service's two cores, and http.client spent about
    190 us of CPU per decision (each response's headers go through the email package), a fifth of
    the service's and the database's together; this spends about half of that (bench/README.md,
    issue 15)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{fields}\r\n"
        self.sock.sendall(head.encode() + body)
        while (end := self.pending.find(b"\r\n\r\n")) < 0:
            self._read()
        lines = self.pending[:end].split(b"\r\n")
        lengths = [
            int(value)
            for name, _, value in (line.partition(b":") for line in lines[1:])
            if name.lower() == b"content-length"
        ]
        if len(lengths) != 1:
            raise BenchFailure(f"a response without one Content-Length: {lines!r}")
        done = end + 4 + lengths[0]
        while len(self.pending) < done:
            self._read()
        answer, self.pending = self.pending[end + 4 : done], self.pending[done:]
        return int(lines[0].split(b" ", 2)[1]), answer

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise BenchFailure("the service closed a kept-alive connection")
        self.pending += chunk

    def close(self) -> None:
        self.sock.close()


def http_round(service: HttpTarget, ids: list[UUID], clients: int, meter: CpuMeter | None = None) -> dict[str, float]:
    connections = [KeptAlive(service.port) for _ in range(clients)]
    headers = service.headers()
    for conn in connections:  # opened and kept alive before timing
        if (status := conn.request("GET", "/healthz", b"", headers)[0]) != 200:
            raise BenchFailure(f"/healthz answered {status}")

    def decide(k: int, i: int) -> None:
        body = json.dumps({"decision": "approve", "decided_by": f"bench-{k}"}).encode()
        status, answer = connections[k].request("POST", f"/approvals/{ids[i]}/decision", body, headers)
        if status != 200 or json.loads(answer).get("status") != "approved":
            raise BenchFailure(f"deciding {ids[i]} over HTTP answered {status}: {answer[:300]!r}")

    try:
        return timed_clients(clients, len(ids), decide, meter)
    finally:
        for conn in connections:
            conn.close()


def direct_round(uri: str, ids: list[UUID], clients: int, meter: CpuMeter | None = None) -> dict[str, float]:
    connections = [connect(uri) for _ in range(clients)]

    def decide(k: int, i: int) -> None:
        row = connections[k].execute(DECIDE_SQL, (ids[i], f"sql:bench-{k}")).fetchone()
        if row is None or row[0].get("status") != "approved":
            raise BenchFailure(f"decide_action on {ids[i]} answered {row!r}")

    try:
        return timed_clients(clients, len(ids), decide, meter)
    finally:
        for conn in connections:
            conn.close()


def floor_round(uri: str, count: int, clients: int, meter: CpuMeter | None = None) -> dict[str, float]:
    connections = [connect(uri) for _ in range(clients)]

    def update(k: int, i: int) -> None:
        if connections[k].execute(FLOOR_SQL, (k,)).rowcount != 1:
            raise BenchFailure(f"the floor's row {k} is missing")

    try:
        return timed_clients(clients, count, update, meter)
    finally:
        for conn in connections:
            conn.close()


def check_decisions(uri: str, decided: dict[str, list[UUID]], floor_expected: int, floor_uri: str) -> dict[str, int]:
    """Every decided action approved exactly once by the channel that decided it; the floor's sum."""
    problems: list[str] = []
    everyone = [action_id for ids in decided.values() for action_id in ids]
    with psycopg.connect(uri, autocommit=True) as conn:
        for system, ids in decided.items():
            actor = "api:bench-%" if system == "opsdesk_http" else "sql:bench-%"
            approved = conn.execute(
                "select count(*) from actions where id = any(%s) and status = 'approved' and decided_by like %s",
                (ids, actor),
            ).fetchone()[0]  # type: ignore[index]
            if approved != len(ids) or len(set(ids)) != len(ids):
                problems.append(f"{system}: {approved} of {len(ids)} decided actions approved by {actor}")
        audit_rows, audit_actions = conn.execute(
            "select count(*), count(distinct action_id) from audit_log where event = 'decided' and action_id = any(%s)",
            (everyone,),
        ).fetchone()  # type: ignore[misc]
        if audit_rows != audit_actions or audit_rows != len(everyone):
            problems.append(
                f"audit: {audit_rows} decided rows for {audit_actions} actions, expected "
                f"{len(everyone)} of each (a lost or doubled decision)"
            )
        statuses = dict(conn.execute("select status, count(*) from actions group by 1").fetchall())
        if statuses != {"approved": len(everyone)}:
            problems.append(f"actions by status {statuses}, expected {{'approved': {len(everyone)}}}")
    with psycopg.connect(floor_uri, autocommit=True) as conn:
        total = int(conn.execute("select coalesce(sum(n), 0) from floor_rows").fetchone()[0])  # type: ignore[index]
    if total != floor_expected:
        problems.append(f"floor: {total} updates counted, {floor_expected} made")
    if problems:
        raise BenchFailure("decision check failed:\n  " + "\n  ".join(problems))
    return {"decided": len(everyone), "audit_decided_rows": audit_rows, "floor_updates": total}


def run(
    server: Server,
    template: str,
    folder: Path,
    *,
    rounds: int,
    clients_levels: list[int],
    per_client: dict[int, int],
    api_workers: int,
    workers_flag: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    uri = server.fresh("bench_decide", template)
    with server.admin() as conn:
        conn.execute("drop database if exists bench_floor with (force)")
        conn.execute("create database bench_floor")
    floor_uri = server.uri("bench_floor")
    with psycopg.connect(floor_uri, autocommit=True) as conn:
        conn.execute("create table floor_rows (id integer primary key, n bigint not null default 0)")
        conn.execute("insert into floor_rows (id) select generate_series(0, %s)", (MAX_CLIENTS - 1,))
    queue = OpsdeskQueue(uri, pool_size=6)
    service = Service(uri, folder / "service", api_workers=api_workers, workers_flag=workers_flag)
    results: dict[str, Any] = {str(c): {s: [] for s in SYSTEMS} for c in clients_levels}
    decided: dict[str, list[UUID]] = {"opsdesk_http": [], "decide_action": []}
    floor_made = 0
    serial = 0
    try:
        service.start()
        log(f"opsdesk run answered /healthz after {service.ready_seconds} s ({service.workers_passed})")
        assert service.process is not None
        meter = CpuMeter.of(server, group=service.process.pid)  # its own session: the group is its pid
        for round_no in range(-1, rounds):  # round -1 warms everything up and is not kept
            for clients in clients_levels:
                count = clients * per_client[clients] if round_no >= 0 else clients * 5
                for system in alternate(SYSTEMS, round_no):
                    if system == "floor_update":
                        numbers = floor_round(floor_uri, count, clients, meter)
                        floor_made += count
                    else:
                        ids = submit_pending(queue, count, serial)
                        serial += count
                        numbers = (
                            http_round(service, ids, clients, meter)
                            if system == "opsdesk_http"
                            else direct_round(uri, ids, clients, meter)
                        )
                        decided[system] += ids
                    if round_no >= 0:
                        results[str(clients)][system].append(numbers)
            if round_no >= 0:
                log(
                    f"decide round {round_no + 1}/{rounds}: "
                    + ", ".join(
                        f"{c} clients http p50 {results[str(c)]['opsdesk_http'][-1]['p50']:.2f} ms"
                        for c in clients_levels
                    )
                )
    finally:
        service.stop()
        queue.close()
    checks = check_decisions(uri, decided, floor_made, floor_uri)
    server.drop("bench_decide")
    server.drop("bench_floor")
    levels = {
        clients: {system: {"median": median_of(per), "rounds": per} for system, per in systems.items()}
        for clients, systems in results.items()
    }
    return {
        "service": service.describe(),
        "levels": levels,
        "checks": checks,
        "config": {
            "rounds": rounds,
            "decisions_per_client_per_round": per_client,
            "actions": "pending MEDIUM note.record, submitted before each round (not timed)",
            "http_client": "compare_decide.KeptAlive: one kept-alive HTTP/1.1 connection per client thread",
        },
    }
