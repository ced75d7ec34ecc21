"""Each integration and each agent is declared once, and what lists them derives from that:
config check, /healthz, Clients and the docs test from the settings parts (app.core.settings);
the `agents run` choices and the schedule's agent jobs from the agents registry scheduler.py hands
in. The made-up integration and agent below reach all of them with no edit anywhere else, which is
what README's "Adding an integration or an agent" promises."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import agents
from app.agent_runs.registry import AgentEntry
from app.cli.agents import agents_app
from app.clients import Clients
from app.core.config_check import check
from app.core.database import Database
from app.core.settings import ClientDeps, Settings, SettingsPart, parts
from app.core.settings.part import Secret
from app.core.settings.service import ScheduleSettings
from app.schedule.jobs import build_jobs
from app.web.routes.health import integrations
from integrations.errors import NotConfigured
from tests.conftest import make_settings
from tests.test_client_configs import EVERYTHING
from tests.test_docs import undocumented

ROOT = Path(__file__).resolve().parent.parent


class ExampleClient:
    def __init__(self, api_key: str, sleep: Any) -> None:
        self.api_key = api_key
        self.sleep = sleep
        self.closed = False

    def close(self) -> None:
        self.closed = True


class ExampleSettings(SettingsPart):
    """A made-up integration, declared the way README says a new one is."""

    part: ClassVar[str] = "example"
    required: ClassVar[tuple[str, ...]] = ("example_api_key",)
    health_setting: ClassVar[str | None] = "example_api_key"

    example_api_key: Secret = None
    example_timeout_seconds: float = 10.0

    def example_client(self, deps: ClientDeps) -> ExampleClient:
        if self.example_api_key is None:
            raise NotConfigured("EXAMPLE_API_KEY is not configured", system="example")
        return ExampleClient(self.example_api_key.get_secret_value(), deps.sleep)


class ExtendedSettings(Settings, ExampleSettings):
    """`Settings` with the made-up part named in its bases (here by subclassing, to leave it alone)."""


def extended(**overrides: Any) -> ExtendedSettings:
    return ExtendedSettings(_env_file=None, ops_api_token="x" * 16, approval_link_secret="y" * 16, **overrides)


def test_every_setting_is_in_exactly_one_part() -> None:
    declared = [name for part in parts() for name in part.model_fields]
    assert sorted(declared) == sorted(Settings.model_fields)  # none left out, none in two parts
    assert parts() == tuple(base for base in Settings.__bases__ if issubclass(base, SettingsPart))


def test_config_check_shows_each_part_with_its_settings_in_their_order() -> None:
    report = check(**EVERYTHING)
    assert [part.name for part in report.parts] == [part.part for part in parts()]
    for part, shown in zip(parts(), report.parts, strict=True):
        names = [row.setting for row in shown.rows if not row.setting.startswith("(")]
        assert names == [name.upper() for name in part.model_fields]


def test_a_rule_across_settings_is_reported_beside_a_malformed_setting() -> None:
    """Pydantic checks a rule across settings only once every setting is valid: config check goes
    round until nothing fails, and reports the rule under the settings it names."""
    report = check(risk_money_high="5", brevo_daily_limit="0", embeddings_provider="voyage")
    rows = {row.setting: (row.state, row.note) for part in report.parts for row in part.rows}
    assert rows["BREVO_DAILY_LIMIT"] == ("malformed", "Input should be greater than 0")
    assert (
        rows["RISK_MONEY_HIGH"]
        == rows["RISK_RECIPIENTS_MEDIUM"]
        == (
            "malformed",
            "risk money thresholds must rise: MEDIUM <= HIGH <= CRITICAL",
        )
    )
    assert rows["EMBEDDINGS_PROVIDER"] == ("malformed", "voyage needs VOYAGE_API_KEY")
    assert rows["VOYAGE_API_KEY"][0] == "unset" and report.ok is False


def test_healthz_shows_every_integration_part_and_only_those() -> None:
    with_health = [part for part in parts() if part.health_setting is not None]
    assert [part.part for part in with_health] == ["anthropic", "hubspot", "brevo", "notion", "discord", "plausible"]
    for part in with_health:  # the key /healthz looks at is the part's own, and needed to switch it on
        assert part.health_setting in part.model_fields and part.health_setting in part.required
    assert set(integrations(make_settings()).values()) == {"not_configured"}
    assert set(integrations(make_settings(**EVERYTHING)).values()) == {"configured"}


CLIENT_FACTORIES = [
    (part, name) for part in parts() for name in vars(part) if name.endswith("_client") and callable(vars(part)[name])
]


def test_every_client_factory_has_its_config_builder() -> None:
    assert {name for _, name in CLIENT_FACTORIES} == {
        "webhook_client",
        "claude_client",
        "hubspot_client",
        "brevo_client",
        "notion_client",
        "discord_client",
        "buffer_client",
        "plausible_client",
    }
    for part, name in CLIENT_FACTORIES:
        assert callable(getattr(part, name.replace("_client", "_config")))


@pytest.mark.parametrize(("part", "name"), CLIENT_FACTORIES, ids=[name for _, name in CLIENT_FACTORIES])
def test_clients_builds_each_part_s_client_once_and_refuses_it_unconfigured(
    db: Database, part: type[SettingsPart], name: str
) -> None:
    build = getattr(Settings, name)
    clients = Clients(make_settings(**EVERYTHING), db, sleep=lambda _: None)
    try:
        client = clients.get(build)
        assert clients.get(build) is client
    finally:
        clients.close()
    with pytest.raises(NotConfigured):
        Clients(make_settings(), db).get(build)


def test_a_new_integration_is_one_settings_part() -> None:
    """Config check, /healthz and Clients take the made-up part with no edit; the docs test names
    its settings as the one other thing to write."""
    report = check(ExtendedSettings, example_api_key="k-0123456789")
    assert [part.name for part in report.parts] == [*(part.part for part in parts()), "example"]
    example = report.parts[-1]
    assert example.state == "ok" and [(row.setting, row.state) for row in example.rows] == [
        ("EXAMPLE_API_KEY", "set"),
        ("EXAMPLE_TIMEOUT_SECONDS", "default"),
    ]
    assert check(ExtendedSettings, example_timeout_seconds=5).parts[-1].state == "incomplete"
    assert check(ExtendedSettings, example_api_key="changeme").parts[-1].state == "malformed"

    assert integrations(extended())["example"] == "not_configured"
    assert integrations(extended(example_api_key="k-0123456789"))["example"] == "configured"

    sleeps: list[float] = []
    clients = Clients(extended(example_api_key="k-0123456789"), sleep=sleeps.append)
    client = clients.get(ExtendedSettings.example_client)
    assert client.api_key == "k-0123456789" and client.sleep == sleeps.append
    clients.close()
    assert client.closed
    with pytest.raises(NotConfigured, match="EXAMPLE_API_KEY"):
        Clients(extended()).get(ExtendedSettings.example_client)

    missing = undocumented(ExtendedSettings)
    assert (
        missing["not in .env.example"]
        == missing["not in the README"]
        == [
            "EXAMPLE_API_KEY",
            "EXAMPLE_TIMEOUT_SECONDS",
        ]
    )


@pytest.mark.parametrize("entry", agents.REGISTRY.entries, ids=lambda entry: entry.name)
def test_each_agent_s_cron_setting_is_a_schedule_setting_checked_as_a_crontab(entry: AgentEntry) -> None:
    assert entry.cron_setting in ScheduleSettings.model_fields  # config check shows it under "schedule"
    assert getattr(make_settings(**{entry.cron_setting: "5  7 * * 1"}), entry.cron_setting) == "5 7 * * 1"
    with pytest.raises(ValidationError) as refused:
        make_settings(**{entry.cron_setting: "61 * * * *"})
    assert [error["loc"] for error in refused.value.errors()] == [(entry.cron_setting,)]
    assert check(**{entry.cron_setting: "every day"}).ok is False


@dataclass
class StandInRegistry:
    """The registry with one more, made-up agent (the schedule and the CLI only read its entries)."""

    entries: tuple[AgentEntry, ...]

    def run(self, name: str, trigger: str, **_: Any) -> Any:
        raise AssertionError("not run here")


MORE_AGENTS = StandInRegistry((*agents.REGISTRY.entries, AgentEntry("billing", "report_cron")))


def test_the_agent_jobs_and_the_cli_choices_come_from_the_registry(db: Database, settings: Settings) -> None:
    jobs = {job.name: job for job in build_jobs(db, settings, worker_id="w1", agents=MORE_AGENTS)}
    names = [entry.name for entry in MORE_AGENTS.entries]
    assert [name for name in jobs if name.startswith("agent_")] == [f"agent_{name}" for name in names]
    assert [entry.name for entry in agents.REGISTRY.entries] == ["sales", "support", "marketing"]
    shown = CliRunner().invoke(agents_app(MORE_AGENTS), ["run", "--help"]).output
    assert all(name in shown for name in names)
    wrong = CliRunner().invoke(agents_app(MORE_AGENTS), ["run", "nobody"])
    assert wrong.exit_code != 0 and "billing" in wrong.output


def test_the_readme_checklist_names_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Adding an integration or an agent") :]
    paths = {
        path.replace("<system>", "hubspot").replace("<kind>", "hubspot").replace("<agent>", "sales")
        for path in re.findall(r"`([\w./<>]+\.py)`", section)
    }
    assert {"app/core/settings/integrations.py", "app/kinds/registry.py", "agents/__init__.py"} <= paths
    assert [path for path in sorted(paths) if not (ROOT / path).is_file()] == []
