"""Zero-setup secrets for the embedded default.

On a fresh machine with no `.env`, the service still needs an API token and a link-signing secret.
For the embedded database only, opsdesk generates both once and keeps them in
`<data dir>/secrets.env` (mode 0600). With an outside database they must be configured.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from app.core.settings import Settings

_GENERATED = ("OPS_API_TOKEN", "APPROVAL_LINK_SECRET")


def _read(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def secrets_path(settings: Settings) -> Path:
    return settings.data_dir / "secrets.env"


def with_local_secrets(settings: Settings) -> Settings:
    """Fill OPS_API_TOKEN / APPROVAL_LINK_SECRET from the data folder when embedded and unset."""
    if settings.database_mode != "embedded":
        return settings
    missing = {name for name in _GENERATED if getattr(settings, name.lower()) is None}
    if not missing:
        return settings
    path = secrets_path(settings)
    stored = _read(path)
    if not missing <= stored.keys():
        for name in missing - stored.keys():
            stored[name] = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(f"{key}={value}\n" for key, value in sorted(stored.items())))
    return settings.model_copy(update={name.lower(): SecretStr(stored[name]) for name in missing})
