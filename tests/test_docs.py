"""Every setting is documented where operators look: .env.example and the README. The settings
come from their parts (app.core.settings.parts), so a new part's settings are checked with no edit
here; .env.example names no setting that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from app.core.settings import Settings, SettingsPart, parts

ROOT = Path(__file__).resolve().parent.parent


def undocumented(settings_class: type[SettingsPart] = Settings) -> dict[str, list[str]]:
    """What the docs lack, or name in excess, for the settings of `settings_class`' parts."""
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    names = [name.upper() for part in parts(settings_class) for name in part.model_fields]
    listed = re.findall(r"^([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE)
    return {
        "not in .env.example": [name for name in names if name not in listed],
        "in .env.example but no setting": [name for name in listed if name not in names],
        "listed twice in .env.example": sorted({name for name in listed if listed.count(name) > 1}),
        "not in the README": [name for name in names if f"`{name}`" not in readme],
    }


def test_every_setting_is_in_env_example_and_the_readme() -> None:
    assert undocumented() == {
        "not in .env.example": [],
        "in .env.example but no setting": [],
        "listed twice in .env.example": [],
        "not in the README": [],
    }
