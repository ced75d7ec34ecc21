"""Each integration's typed config is built by its settings part (`Settings.<system>_config`,
app.core.settings): every field a setting exists for comes from it, secrets stay secret, and a
missing key is NotConfigured before any client is made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from app.core.errors import describe
from app.core.settings import Settings
from integrations.errors import NotConfigured
from tests.conftest import make_settings
from tests.fake_hubspot import TOKEN

SECRETS = {
    "anthropic_api_key": "sk-ant-api03-secret-0123456789",
    "hubspot_private_app_token": TOKEN,
    "notion_api_key": "ntn_secret_0123456789",
    "brevo_api_key": "xkeysib-secret-0123456789",
    "voyage_api_key": "pa-secret-0123456789",
    "openai_api_key": "sk-secret-0123456789",
    "discord_webhook_url": "https://discord.com/api/webhooks/123456789/secret-token-0123456789",
    "buffer_api_key": "buf_secret_0123456789",
    "plausible_api_key": "plausible-secret-0123456789",
}
EVERYTHING: dict[str, Any] = {
    **SECRETS,
    "brevo_sender_email": "ops@example.com",
    "webhook_post_url": "https://hooks.example.com/opsdesk",
    "embeddings_provider": "voyage",
    "plausible_site_id": "example.com",
}
BUILDERS: list[Callable[[Settings], BaseModel]] = [
    Settings.claude_config,
    Settings.hubspot_config,
    Settings.notion_config,
    Settings.embeddings_config,
    Settings.brevo_config,
    Settings.discord_config,
    Settings.webhook_config,
    Settings.buffer_config,
    Settings.plausible_config,
]
# fields no setting exists for: the client's own default holds
NO_SETTING = {
    ("HubSpotConfig", "attempts"),
    ("BrevoConfig", "attempts"),
    ("BufferConfig", "attempts"),
    ("PlausibleConfig", "max_attempts"),
}


@pytest.mark.parametrize("build", BUILDERS, ids=lambda build: build.__name__)
def test_every_field_a_setting_exists_for_is_set_from_it_and_secrets_stay_secret(
    build: Callable[[Settings], BaseModel],
) -> None:
    config = build(make_settings(**EVERYTHING))
    kind = type(config).__name__
    unset = {field for field in type(config).model_fields if (kind, field) not in NO_SETTING} - config.model_fields_set
    assert unset == set()
    assert type(config).model_config.get("frozen") is True
    shown = repr(config) + str(config)
    assert not [name for name, secret in SECRETS.items() if secret in shown]


def test_the_settings_reach_the_config() -> None:
    settings = make_settings(
        **EVERYTHING,
        anthropic_model="claude-opus-5-5",
        hubspot_base_url="http://127.0.0.1:1/hub",
        notion_title_property="Title",
        llm_prices_json='{"claude-opus-5-5": {"input": 6, "output": 30}}',
    )
    claude = Settings.claude_config(settings)
    assert claude.model == "claude-opus-5-5" and claude.prices["claude-opus-5-5"].input == 6
    assert claude.prices["claude-sonnet-5-5"].output == 10  # the built-in table stays under the overrides
    assert Settings.hubspot_config(settings).base_url == "http://127.0.0.1:1/hub"
    assert Settings.notion_config(settings).title_property == "Title"
    assert Settings.hubspot_config(make_settings(**EVERYTHING)).base_url == "https://api.hubapi.com"


@pytest.mark.parametrize(
    ("build", "left_out", "named"),
    [
        (Settings.claude_config, "anthropic_api_key", "ANTHROPIC_API_KEY"),
        (Settings.hubspot_config, "hubspot_private_app_token", "HUBSPOT_PRIVATE_APP_TOKEN"),
        (Settings.notion_config, "notion_api_key", "NOTION_API_KEY"),
        (Settings.brevo_config, "brevo_sender_email", "BREVO_SENDER_EMAIL"),
        (Settings.discord_config, "discord_webhook_url", "DISCORD_WEBHOOK_URL"),
        (Settings.webhook_config, "webhook_post_url", "WEBHOOK_POST_URL"),
        (Settings.plausible_config, "plausible_site_id", "PLAUSIBLE_SITE_ID"),
    ],
)
def test_a_missing_key_is_not_configured(build: Callable[[Settings], BaseModel], left_out: str, named: str) -> None:
    settings = {key: value for key, value in EVERYTHING.items() if key != left_out}
    with pytest.raises(NotConfigured, match=named) as refused:
        build(make_settings(**settings))
    info = describe(refused.value)
    assert (info.status_code, info.code, info.exit_code) == (500, "config_error", 2)
