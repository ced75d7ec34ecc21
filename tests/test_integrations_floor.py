"""integrations/ is the floor the app stands on: it imports nothing from app/, agents/ or
scheduler.py, wherever the import stands (module level, in a function, under TYPE_CHECKING, through
importlib); its modules stay under 400 lines; and its configs and data types load without the
heavy SDKs, which load with the first client that needs them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABOVE = ("app", "agents", "scheduler")
HEAVY_SDKS = ("anthropic", "hubspot", "notion_client", "sib_api_v3_sdk")
MAX_LINES = 400


def imported(source: str, package: str = "integrations") -> Iterator[tuple[int, str]]:
    """(line, module) for every import in `source`, relative ones resolved within `package`, and
    importlib.import_module / __import__ calls with a literal name."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join(part for part in (package, module) if part)
            yield node.lineno, module
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def from_above(module: str) -> bool:
    return module.split(".")[0] in ABOVE


def integration_modules() -> list[Path]:
    found = sorted((ROOT / "integrations").rglob("*.py"))
    assert len(found) > 10
    return found


def test_the_walk_sees_every_kind_of_import() -> None:
    source = textwrap.dedent(
        """
        from __future__ import annotations
        import importlib
        from typing import TYPE_CHECKING
        import app.core.settings
        from agents import run_agent
        if TYPE_CHECKING:
            from app.core.database import Database
        def later() -> None:
            import scheduler
            from app import errors
        importlib.import_module("agents.sales")
        __import__("app.cli")
        from . import resilience
        """
    )
    assert sorted(module for _, module in imported(source) if from_above(module)) == [
        "agents",
        "agents.sales",
        "app",
        "app.cli",
        "app.core.database",
        "app.core.settings",
        "scheduler",
    ]


def test_integrations_import_nothing_from_above() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in integration_modules()
        for line, module in imported(path.read_text())
        if from_above(module)
    ]
    assert found == []


def test_integration_modules_stay_under_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in integration_modules()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


LOADED = """
import json, sys
heavy = {heavy!r}
loaded = lambda: sorted(name for name in heavy if name in sys.modules)
{imports}
before = loaded()
{clients}
print(json.dumps({{"before": before, "after": loaded()}}))
"""

TYPES = """
from integrations.brevo import Address, BrevoConfig, BrevoRefused, CreditsExhausted, Message, OutcomeUncertain
from integrations.claude import ClaudeConfig, ModelResolution, Turn
from integrations.discord import DiscordConfig, WebhookMessage
from integrations.embeddings import EmbeddingsConfig
from integrations.hubspot import HubSpotConfig
from integrations.hubspot_models import Contact, Deal, Engagement, Ticket
from integrations.notion import BlogDraft, KBPage, NotionConfig
from integrations.webhook import WebhookConfig
import app.core.settings, app.clients, app.clients.claude_ledger, app.clients.rate_slots, scheduler
from app.kinds.registry import kind_registry
kind_registry()  # the kinds' payloads are built on the integrations' data types
"""

CLIENTS = """
from integrations.brevo import BrevoClient
from integrations.claude import ClaudeClient
from integrations.hubspot import HubSpotClient
from integrations.notion import NotionClient
BrevoClient(BrevoConfig(api_key="k", sender=Address(email="ops@example.com"))).close()
ClaudeClient(ClaudeConfig(api_key="k"), ledger=None, model_cache=None).close()
HubSpotClient(HubSpotConfig(access_token="t"), slots=None).close()
NotionClient(NotionConfig(api_key="k")).close()
"""


def test_configs_and_data_types_load_without_the_heavy_sdks() -> None:
    """Deterministic, no timing: what is in sys.modules after importing the configs and types (and
    the app modules that build them, the CLI's entry point and the kinds), then after making one
    client of each."""
    program = LOADED.format(heavy=HEAVY_SDKS, imports=TYPES, clients=CLIENTS)
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"before": [], "after": sorted(HEAVY_SDKS)}
