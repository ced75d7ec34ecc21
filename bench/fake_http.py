"""What tests/fake_http.py's two settings cost, side by side in one run: a keep-alive request with
and without Nagle's algorithm on the server socket (headers and body are two writes, so with Nagle
the body waits for the client's delayed ACK), and a fake's exit with serve_forever's default
half-second poll against a 50 ms one. Writes bench/results/fake_http.json."""

# ruff: noqa: E402  (the project root goes on sys.path before the fakes are imported)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# `python bench/fake_http.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue`: drop bench/ and put the project root there.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR.parent))

import json
import platform
import statistics
import threading
import time
from typing import Any

import httpx

from bench.provenance import ROOT, code_version
from tests.fake_http import FakeServer, Reply

REQUESTS = 200
EXITS = 10


def request_latencies(nagle: bool) -> list[float]:
    fake = FakeServer(lambda _: Reply(200, {"results": [{"metrics": [1], "dimensions": []}]}))
    fake.server.RequestHandlerClass.disable_nagle_algorithm = not nagle  # type: ignore[attr-defined]
    with fake, httpx.Client(base_url=fake.url) as client:
        client.post("/warm-up", json={})
        out = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            client.post("/api/v2/query", json={"site_id": "example.com"})
            out.append((time.perf_counter() - started) * 1000)
    return out


def exit_seconds(poll_interval: float) -> list[float]:
    out = []
    for _ in range(EXITS):
        fake = FakeServer()
        fake._thread = threading.Thread(
            target=fake.server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )
        fake.__enter__()
        time.sleep(0.01)  # let serve_forever enter its poll
        started = time.perf_counter()
        fake.__exit__(None, None, None)
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    with_nagle, without_nagle = request_latencies(nagle=True), request_latencies(nagle=False)
    slow_exit, quick_exit = exit_seconds(0.5), exit_seconds(0.05)
    results: dict[str, Any] = {
        "code": code_version((ROOT / "schema.sql").read_text()),
        "python": platform.python_version(),
        "machine": platform.platform(),
        "requests": REQUESTS,
        "exits": EXITS,
        "request_ms": {
            "nagle_on_p50": statistics.median(with_nagle),
            "nagle_off_p50": statistics.median(without_nagle),
            "nagle_on_p95": statistics.quantiles(with_nagle, n=20)[-1],
            "nagle_off_p95": statistics.quantiles(without_nagle, n=20)[-1],
        },
        "exit_s": {"poll_0.5_mean": statistics.mean(slow_exit), "poll_0.05_mean": statistics.mean(quick_exit)},
    }
    out = ROOT / "bench" / "results" / "fake_http.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    req, ext = results["request_ms"], results["exit_s"]
    print(
        f"| keep-alive request | p50 ms | p95 ms |\n|---|---:|---:|\n"
        f"| Nagle on (before) | {req['nagle_on_p50']:.2f} | {req['nagle_on_p95']:.2f} |\n"
        f"| Nagle off (now) | {req['nagle_off_p50']:.2f} | {req['nagle_off_p95']:.2f} |\n"
        f"| ratio | {req['nagle_on_p50'] / req['nagle_off_p50']:.0f}x | |\n"
    )
    print(
        f"| fake exit | mean s |\n|---|---:|\n| poll 0.5 s (before) | {ext['poll_0.5_mean']:.3f} |\n"
        f"| poll 0.05 s (now) | {ext['poll_0.05_mean']:.3f} |"
    )


if __name__ == "__main__":
    main()
