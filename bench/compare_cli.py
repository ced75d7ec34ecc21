"""Part `cli` of bench/compare.py: how soon the command line answers.

- `opsdesk --help` (the project's .venv) against `procrastinate --help` (bench/.venv-ref), in
  alternating rounds; with hyperfine (`-N`: no shell in between) when it is installed, else timed
  here with a subprocess per run.
- `opsdesk approvals list` while `opsdesk run` serves the same database. The CLI does not talk to
  the service: it opens DATABASE_URL itself (a pool, the schema version check, the memory
  embeddings check, then `list_actions`), so this is a whole process start plus that.
- `python -X importtime -c "import scheduler"`: what the `opsdesk` command imports before it parses
  its arguments, the largest by cumulative time (the raw output goes to bench/results/).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.compare_common import ROOT, BenchFailure, Server, alternate, ratio, ref_python
from bench.compare_decide import submit_pending
from bench.compare_service import Service, opsdesk_command
from bench.opsdesk_adapter import CLI_MODULE, OpsdeskQueue

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def time_runs(argv: list[str], runs: int, env: dict[str, str], cwd: Path) -> tuple[list[float], str]:
    """Wall seconds of `runs` runs of argv (each must exit 0), and what timed them."""
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [
                    hyperfine,
                    "-N",
                    "--warmup",
                    "1",
                    "--runs",
                    str(runs),
                    "--style",
                    "none",
                    "--export-json",
                    out.name,
                    " ".join(argv),
                ],
                check=True,
                env=env,
                cwd=cwd,
                capture_output=True,
                timeout=600,
            )
            return [float(t) for t in json.loads(Path(out.name).read_text())["results"][0]["times"]], "hyperfine -N"
    samples = []
    for _ in range(runs + 1):  # the first is a warm-up
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120)
        samples.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise BenchFailure(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]!r}")
    return samples[1:], "subprocess.run wall time"


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 4),
        "min_s": round(min(samples), 4),
        "mean_s": round(statistics.fmean(samples), 4),
        "runs": len(samples),
    }


def import_times(env: dict[str, str], cwd: Path, out: Path) -> dict[str, Any]:
    """`python -X importtime -c "import <CLI_MODULE>"` (after one warm-up run): total and the top 15."""
    argv = [sys.executable, "-X", "importtime", "-c", f"import {CLI_MODULE}"]
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=True)
    text = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=True).stderr
    out.write_text(text)
    rows = []
    for line in text.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            rows.append(
                {
                    "module": match.group(4),
                    "self_ms": int(match.group(1)) / 1000,
                    "cumulative_ms": int(match.group(2)) / 1000,
                    "depth": len(match.group(3)) // 2,
                }
            )
    total = next((r["cumulative_ms"] for r in rows if r["module"] == CLI_MODULE), None)
    if total is None:
        raise BenchFailure(f"no `{CLI_MODULE}` line in the importtime output")
    top = sorted((r for r in rows if r["module"] != CLI_MODULE), key=lambda r: -r["cumulative_ms"])[:15]
    # the nested chain above hides which libraries cost the time: each top-level package's own share
    packages: dict[str, float] = {}
    for row in rows:
        package = row["module"].split(".")[0]
        packages[package] = packages.get(package, 0.0) + row["self_ms"]
    by_package = [
        {"package": name, "self_ms": round(value, 1)}
        for name, value in sorted(packages.items(), key=lambda item: -item[1])[:15]
    ]
    return {
        "command": f'python -X importtime -c "import {CLI_MODULE}"',
        "total_ms": total,
        "modules_imported": len(rows),
        "top_cumulative": top,
        "by_package": by_package,
        "raw": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
    }


def run(
    server: Server,
    template: str,
    folder: Path,
    results_dir: Path,
    *,
    rounds: int,
    runs: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    uri = server.fresh("bench_cli", template)
    queue = OpsdeskQueue(uri, pool_size=6)
    try:
        submit_pending(queue, 20, 0)  # a short page to list, as on a typical day
    finally:
        queue.close()
    service = Service(uri, folder / "service")
    env = dict(service.env)
    opsdesk = str(opsdesk_command())
    procrastinate = str(ref_python().parent / "procrastinate")
    commands = {"opsdesk --help": [opsdesk, "--help"], "procrastinate --help": [procrastinate, "--help"]}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    timer = ""
    for round_no in range(rounds):
        for name in alternate(list(commands), round_no):
            times, timer = time_runs(commands[name], runs, env, folder)
            samples[name] += times
    listing: list[float] = []
    try:
        service.start()
        for _ in range(rounds):
            times, _ = time_runs([opsdesk, "approvals", "list"], runs, env, folder)
            listing += times
    finally:
        service.stop()
    server.drop("bench_cli")
    help_times = {name: summary(values) for name, values in samples.items()}
    log(
        f"cli: opsdesk --help {help_times['opsdesk --help']['median_s']:.3f} s, procrastinate --help "
        f"{help_times['procrastinate --help']['median_s']:.3f} s, approvals list {statistics.median(listing):.3f} s"
    )
    return {
        "timer": timer,
        "rounds": rounds,
        "runs_per_round": runs,
        "help": help_times,
        "help_ratio": ratio(help_times["opsdesk --help"]["median_s"], help_times["procrastinate --help"]["median_s"]),
        "approvals_list": {
            **summary(listing),
            "command": "opsdesk approvals list",
            "connects_to": "DATABASE_URL directly (the same database `opsdesk run` serves); not the HTTP API",
            "pending_listed": 20,
        },
        "importtime": import_times(env, folder, results_dir / "importtime-cli.txt"),
    }
