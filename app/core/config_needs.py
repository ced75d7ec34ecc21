"""What a command needs configured, said before it starts anything: the parts of `opsdesk config
check` it cannot run without (an agent's needs, app.agent_runs.registry.AgentEntry), each with the
settings still missing and where to set them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.core.config_check import is_set
from app.core.errors import ConfigError
from app.core.settings import Settings
from app.core.settings import parts as settings_parts

HOW_TO_SET = (
    "in .env (in the folder you run opsdesk from) or the environment; .env.example documents each "
    "setting, and `opsdesk config check` shows what is set"
)


def unconfigured(settings: Settings, parts: Iterable[str]) -> dict[str, list[str]]:
    """Of the parts named (an agent's needs, an integration's system name), those that lack a
    setting they require: part name -> the missing settings' environment names."""
    by_name = {part.part: part for part in settings_parts(type(settings))}
    missing = {
        name: [field.upper() for field in by_name[name].required if not is_set(getattr(settings, field))]
        for name in parts
    }
    return {name: fields for name, fields in missing.items() if fields}


def require(settings: Settings, parts: Iterable[str], *, command: str) -> None:
    """Raise ConfigError naming every missing setting of the parts a command needs, and how to set
    them: said before the command starts anything, and nothing else."""
    missing = unconfigured(settings, parts)
    if missing:
        details: dict[str, Any] = {name: "set " + ", ".join(fields) for name, fields in missing.items()}
        raise ConfigError(
            f"`{command}` needs {_joined(list(missing))}, not configured yet", details={**details, "where": HOW_TO_SET}
        )


def _joined(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
