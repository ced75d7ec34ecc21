"""What every settings part is made of: the base class, the rules a field declares by its type, and
what a client may need from the app.

A part is one `BaseSettings` mixin with flat field names, so each environment name is the field
name upper-cased; `app.core.settings.Settings` inherits them all. Its class variables say how
`opsdesk config check` and `/healthz` show it; an integration's part also builds its typed config
(`<system>_config()`) and its client (`<system>_client(deps)`), importing the integration only then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core import setting_values as values

if TYPE_CHECKING:  # the integrations load with the first client, not with the settings
    from integrations.buffer_oauth import TokenStore
    from integrations.claude import ModelCache, SpendLedger
    from integrations.rate_limit import RateSlots
    from integrations.resilience import CircuitBreaker


class SettingsPart(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,  # `NAME=` lines copied from .env.example mean "not set"
    )

    part: ClassVar[str]  # its heading in `opsdesk config check`, and its /healthz key
    required: ClassVar[tuple[str, ...]] = ()  # needed once the part is switched on
    always_on: ClassVar[bool] = False  # checked even when none of its settings is given
    # an integration: /healthz says "configured" when this setting is given
    health_setting: ClassVar[str | None] = None


@dataclass(frozen=True)
class ClientDeps:
    """What a client may need from the app, which app.clients builds from the database. A client
    whose need is missing here is NotConfigured."""

    sleep: Callable[[float], None] = time.sleep  # tests pass a recorder instead of waiting
    rate_slots: RateSlots | None = None  # HubSpot's rate limit, shared by every process
    spend_ledger: SpendLedger | None = None  # Claude's daily budget
    model_cache: ModelCache | None = None  # Claude's model choice, shared by every process
    breaker: CircuitBreaker | None = None  # one client's own breaker (tests); a new one when unset
    buffer_tokens: TokenStore | None = None  # Buffer's OAuth grant, stored encrypted (BUFFER_TOKEN_KEY)


def rule_broken(message: str, *settings: str) -> PydanticCustomError:
    """A rule across settings (so pydantic gives it no location): config check reports it under
    `settings`, found in the error's context."""
    return PydanticCustomError("value_error", message, {"settings": settings})


def _http_url(value: str | None, info: ValidationInfo) -> str | None:
    return values.http_url(value, field=(info.field_name or "").upper())


# The rules a field declares by its type, so no list of field names repeats them.
HttpUrl = Annotated[str, AfterValidator(_http_url)]
OptionalHttpUrl = Annotated[str | None, AfterValidator(_http_url)]
Secret = Annotated[SecretStr | None, AfterValidator(values.no_placeholder)]  # refuses "changeme" and co
Crontab = Annotated[str, AfterValidator(values.crontab)]  # standard 5 fields
TimeZoneName = Annotated[str, AfterValidator(values.known_time_zone)]
OptionalTimeZoneName = Annotated[str | None, AfterValidator(values.known_time_zone)]
NonNegativeMoney = Annotated[Decimal, Field(ge=0)]
