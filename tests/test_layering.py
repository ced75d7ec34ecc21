"""The tree shows the architecture: each package of app/ imports only the layers below it, app/ never
imports agents/ or scheduler.py, there is no import circle between modules, nothing is loaded by
name through importlib, and every module stays under 400 lines.

Every import counts wherever it stands (module level, in a function, under TYPE_CHECKING): a
circle hidden in a function is still a circle a reader has to untangle. Each domain names the
schema.sql functions it calls in one module, its `sql.py`."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tests.test_integrations_floor import MAX_LINES, ROOT

APP = ("core", "clients", "memory", "email", "agent_runs", "kinds", "approvals", "notifications", "reports")
APP += ("schedule", "web", "runtime", "cli")

# What each layer may import besides itself (and the standard library and third-party packages).
ALLOWED: dict[str, set[str]] = {
    "integrations": set(),
    "app.core": {"integrations"},
    "app.clients": {"app.core", "integrations"},
    "app.memory": {"app.core", "app.clients", "integrations"},
    "app.email": {"app.core", "app.clients", "integrations"},
    "app.agent_runs": {"app.core", "integrations"},
    "app.kinds": {"app.core", "app.clients", "app.email", "integrations"},
    "app.approvals": {"app.core", "app.clients", "app.kinds", "integrations"},
    "app.notifications": {"app.core", "app.clients", "app.approvals", "integrations"},
    "app.reports": {"app.core", "app.clients", "app.approvals", "integrations"},
    "app.schedule": {f"app.{name}" for name in APP if name not in {"schedule", "web", "runtime", "cli"}}
    | {"integrations"},
    "app.web": {"app.core", "app.clients", "app.memory", "app.approvals", "app.reports", "integrations"},
    "app.runtime": {f"app.{name}" for name in APP if name not in {"runtime", "cli"}} | {"integrations"},
    "app.cli": {f"app.{name}" for name in APP if name != "cli"} | {"integrations"},
    "agents": {f"app.{name}" for name in APP if name not in {"web", "cli"}} | {"integrations"},
    "scheduler": {"app.cli", "agents"},
}
OURS = ("app", "agents", "integrations", "scheduler")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    paths = [*ROOT.glob("app/**/*.py"), *ROOT.glob("agents/**/*.py"), *ROOT.glob("integrations/**/*.py")]
    return {module_name(path): path for path in [*paths, ROOT / "scheduler.py"]}


def layer(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "app" and len(parts) > 1 else parts[0]


def edges() -> Iterator[tuple[str, str, int]]:
    """(importer, imported module of ours, line), counted as grimp and import-linter count them:
    `from app.x import y` imports the module `app.x.y` when there is one, else `app.x`."""
    known = modules()
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(part for part in (package, base) if part)
                targets = [
                    (node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
                    for alias in node.names
                ]
            else:
                continue
            for line, target in targets:
                if target.split(".")[0] not in OURS:
                    continue
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                if target in known and target != module:
                    yield module, target, line


def test_each_layer_imports_only_the_layers_below_it() -> None:
    found = sorted(
        f"{source}:{line} imports {target}"
        for source, target, line in edges()
        if layer(target) != layer(source) and layer(target) not in ALLOWED[layer(source)]
    )
    assert found == []


def test_every_app_package_has_its_rule() -> None:
    packages = {path.parent.name for path in ROOT.glob("app/*/__init__.py")}
    assert packages == set(APP)


def test_no_import_circle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for source, target, _ in edges():
        graph.setdefault(source, set()).add(target)
    circles = [sorted(part) for part in strongly_connected(graph) if len(part) > 1]
    assert circles == []


def test_nothing_is_imported_by_name() -> None:
    loaded = [
        f"{path.relative_to(ROOT)}: {call}"
        for path in modules().values()
        for call in ("import_module(", "__import__(")
        if call in path.read_text()
    ]
    assert loaded == []


def test_every_module_stays_under_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in modules().values()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


CALLS = ("call", "call_object", "call_optional", "call_list")


def sql_names(path: Path) -> Iterator[tuple[str | None, int]]:
    """(the SQL function's name, or None when it is not a literal; line) of every Database call."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CALLS:
            first = node.args[0] if node.args else None
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            yield (first.value if literal else None), node.lineno  # type: ignore[union-attr]


def test_each_domain_owns_its_sql_function_names_in_one_module() -> None:
    """Only a package's sql.py names schema.sql functions (the Database names its own schema check);
    no name is owned twice; each is a function of schema.sql."""
    defined = set(re.findall(r"^create or replace function (\w+)\(", (ROOT / "schema.sql").read_text(), re.M))
    owners: dict[str, list[str]] = {}
    elsewhere = []
    for module, path in modules().items():
        for name, line in sql_names(path):
            if module == "app.core.database":
                continue
            if path.name != "sql.py" or name is None:
                elsewhere.append(f"{path.relative_to(ROOT)}:{line} calls {name or 'a computed name'}")
            else:
                owners.setdefault(name, []).append(module)
    assert elsewhere == []
    assert {name: found for name, found in owners.items() if len(found) > 1} == {}
    assert sorted(set(owners) - defined) == []
    assert len(owners) > 60  # the walk sees the calls


def test_the_walk_finds_a_circle_and_a_layer_break() -> None:
    """The checks above can fail: a made-up graph with a circle and a made-up upward edge."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(part) for part in strongly_connected(graph) if len(part) > 1] == [["a", "b", "c"]]
    assert "app.cli" not in ALLOWED["app.core"] and "agents" not in ALLOWED["app.cli"]
    assert layer("app.core.settings") == "app.core" and layer("integrations.hubspot") == "integrations"


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion depth is not ours to spend)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    nodes = set(graph) | {target for targets in graph.values() for target in targets}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    part: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        part.add(member)
                        if member == node:
                            break
                    found.append(part)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found
