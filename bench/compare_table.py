"""bench/compare.py's results as the issue's markdown table (medians over rounds, with ratios)."""

from __future__ import annotations

from typing import Any

from bench.compare_common import ratio


def ms(value: float) -> str:
    return f"{value:,.2f} ms" if value < 10 else f"{value:,.1f} ms"


def times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def decide_rows(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for clients, systems in part["levels"].items():
        http, floor, direct = (systems[s]["median"] for s in ("opsdesk_http", "floor_update", "decide_action"))
        rows.append(
            (
                f"decision over HTTP, {clients} client(s), p50 / p95 / p99",
                f"{ms(http['p50'])} / {ms(http['p95'])} / {ms(http['p99'])}",
                f"bare `UPDATE` round trip {ms(floor['p50'])} / {ms(floor['p95'])} / {ms(floor['p99'])}",
                f"{times(ratio(http['p50'], floor['p50']))} / {times(ratio(http['p95'], floor['p95']))} / "
                f"{times(ratio(http['p99'], floor['p99']))}",
            )
        )
        rows.append(
            (
                f"decision over HTTP, {clients} client(s), throughput",
                f"{http['per_second']:,.0f}/s",
                f"bare `UPDATE` {floor['per_second']:,.0f}/s",
                times(ratio(http["per_second"], floor["per_second"])),
            )
        )
        if "cpu_us_postgres" in http:  # runs before the meter have no CPU figures
            rows.append(
                (
                    f"decision over HTTP, {clients} client(s), CPU per decision: service / PostgreSQL / client",
                    f"{http['cpu_us_service']:,.0f} / {http['cpu_us_postgres']:,.0f} / {http['cpu_us_client']:,.0f} us",
                    f"bare `UPDATE`: PostgreSQL {floor['cpu_us_postgres']:,.0f} / client "
                    f"{floor['cpu_us_client']:,.0f} us",
                    times(
                        ratio(
                            http["cpu_us_service"] + http["cpu_us_postgres"] + http["cpu_us_client"],
                            floor["cpu_us_postgres"] + floor["cpu_us_client"],
                        )
                    ),
                )
            )
        rows.append(
            (
                f"`decide_action` called directly, {clients} client(s), p50 / p95",
                f"{ms(direct['p50'])} / {ms(direct['p95'])} ({direct['per_second']:,.0f}/s)",
                f"bare `UPDATE` {ms(floor['p50'])} / {ms(floor['p95'])}",
                f"{times(ratio(direct['p50'], floor['p50']))} / {times(ratio(direct['p95'], floor['p95']))}",
            )
        )
    return rows


def enqueue_rows(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    clients = part["config"]["clients"]
    mine, ref = part["enqueue"]["opsdesk"]["median"], part["enqueue"]["procrastinate"]["median"]
    drain_mine, drain_ref = part["drain"]["opsdesk"]["median"], part["drain"]["procrastinate"]["median"]
    return [
        (
            f"enqueue, {clients} clients (in-process submit of LOW no-op actions vs `defer`)",
            f"{mine['per_second']:,.0f}/s (p50 {ms(mine['p50'])})",
            f"procrastinate {ref['per_second']:,.0f}/s (p50 {ms(ref['p50'])})",
            times(ratio(mine["per_second"], ref["per_second"])),
        ),
        (
            "drain no-op work, one worker",
            f"{drain_mine['per_second']:,.0f}/s",
            f"procrastinate {drain_ref['per_second']:,.0f}/s",
            times(ratio(drain_mine["per_second"], drain_ref["per_second"])),
        ),
    ]


def wal_rows(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    scenarios = part["scenarios"]
    ref = scenarios["procrastinate defer -> run"]["median_per_action"]

    def shown(per: dict[str, float]) -> str:
        return (
            f"{per['wal_bytes'] / 1024:.1f} KB, {per['row_writes']:g} row writes, {per['transactions']:g} transactions"
        )

    rows = []
    for name, values in scenarios.items():
        if name.startswith("procrastinate"):
            continue
        mine = values["median_per_action"]
        rows.append(
            (
                f"WAL per executed action ({name})",
                shown(mine),
                f"procrastinate {shown(ref)}",
                f"{times(ratio(mine['wal_bytes'], ref['wal_bytes']))} WAL, "
                f"{times(ratio(mine['row_writes'], ref['row_writes']))} rows",
            )
        )
    return rows


def cli_rows(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    mine, ref = part["help"]["opsdesk --help"], part["help"]["procrastinate --help"]
    imports = part["importtime"]
    return [
        (
            "`opsdesk --help`",
            f"{mine['median_s']:.3f} s",
            f"`procrastinate --help` {ref['median_s']:.3f} s",
            times(part["help_ratio"]),
        ),
        (
            "`opsdesk approvals list` (service running; the CLI asks it over HTTP)",
            f"{part['approvals_list']['median_s']:.3f} s",
            "",
            "",
        ),
        (f"`{imports['command']}`", f"{imports['total_ms']:,.0f} ms ({imports['modules_imported']} modules)", "", ""),
    ]


def vector_rows(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    config, latency, recall = part["config"], part["latency_ms"], part["recall@10"]
    rows_label = f"{config['rows'] // 1000}k" if config["rows"] < 1_000_000 else f"{config['rows'] / 1e6:g}M"
    mine, plain, same = latency["opsdesk"]["median"], latency["plain"]["median"], latency["plain_same_ef"]["median"]
    return [
        (
            f"vector search p50 / p95, {rows_label} rows ({config['vectors']} vectors)",
            f"{ms(mine['p50'])} / {ms(mine['p95'])} (recall {recall['opsdesk']:.3f})",
            f"plain `ORDER BY <=> LIMIT 10` {ms(plain['p50'])} / {ms(plain['p95'])} (recall {recall['plain']:.3f})",
            f"{times(ratio(mine['p50'], plain['p50']))} / {times(ratio(mine['p95'], plain['p95']))}",
        ),
        (
            f"same, plain query at opsdesk's ef_search {config['opsdesk_ef_search']}",
            "",
            f"{ms(same['p50'])} / {ms(same['p95'])} (recall {recall['plain_same_ef']:.3f})",
            f"{times(ratio(mine['p50'], same['p50']))} / {times(ratio(mine['p95'], same['p95']))}",
        ),
    ]


def wal_tables(part: dict[str, Any]) -> str:
    """Row writes per action by table (inserted / updated / deleted), the run nearest the median."""
    lines = ["| scenario | table | inserted | updated (HOT) | deleted |", "|---|---|---:|---:|---:|"]
    notes = []
    for name, values in part["scenarios"].items():
        for table, counters in values["run_nearest_median"]["tables_per_action"].items():
            lines.append(
                f"| {name} | {table} | {counters.get('n_tup_ins', 0):g} | "
                f"{counters.get('n_tup_upd', 0):g} ({counters.get('n_tup_hot_upd', 0):g}) | "
                f"{counters.get('n_tup_del', 0):g} |"
            )
        for what, counts in (values["run_nearest_median"].get("afterwards") or {}).items():
            notes.append(f"- {name}: {what} afterwards {counts}")
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "")


def markdown(parts: dict[str, Any]) -> str:
    builders = {"decide": decide_rows, "enqueue": enqueue_rows, "wal": wal_rows, "cli": cli_rows, "vector": vector_rows}
    lines = ["| measure | opsdesk | reference | ratio |", "|---|---:|---:|---:|"]
    for name, build in builders.items():
        if name in parts:
            lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in build(parts[name])]
    text = "\n".join(lines)
    if "wal" in parts:
        text += "\n\nRow writes per executed action, by table:\n\n" + wal_tables(parts["wal"])
    if "cli" in parts:
        imports = parts["cli"]["importtime"]
        top = imports["top_cumulative"][:10]
        module = imports["command"].rsplit("import ", 1)[-1].rstrip('"')  # what the run measured
        text += (
            f"\n\nLargest imports of `import {module}` (cumulative ms, depth 1: imported by {module} itself):\n\n"
            "| module | depth | cumulative ms |\n|---|---:|---:|\n"
            + "\n".join(f"| {row['module']} | {row['depth']} | {row['cumulative_ms']:,.1f} |" for row in top)
        )
        text += (
            "\n\nThe same import time by top-level package (each module's own time, summed):\n\n"
            "| package | ms |\n|---|---:|\n"
            + "\n".join(f"| {row['package']} | {row['self_ms']:,.1f} |" for row in imports["by_package"][:12])
        )
    return text + "\n"
