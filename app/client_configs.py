"""Each integration's typed config, built from the flat `Settings`.

The integrations know nothing of the app's settings: each client takes its own small config. A
setting a client cannot work without raises `NotConfigured` here, before any client is made.
"""

from __future__ import annotations

from app.settings import Settings
from integrations import claude, hubspot
from integrations.errors import NotConfigured


def claude_config(settings: Settings) -> claude.ClaudeConfig:
    if settings.anthropic_api_key is None:
        raise NotConfigured("ANTHROPIC_API_KEY is not set", system=claude.SYSTEM)
    return claude.ClaudeConfig(
        api_key=settings.anthropic_api_key,
        model=settings.anthropic_model,
        base_url=settings.anthropic_base_url or claude.DEFAULT_BASE_URL,
        timeout_seconds=settings.anthropic_timeout_seconds,
        max_attempts=settings.anthropic_max_attempts,
        model_cache_hours=settings.anthropic_model_cache_hours,
        prompt_cache_ttl=settings.anthropic_prompt_cache_ttl,
        prices=settings.llm_prices,
    )


def hubspot_config(settings: Settings) -> hubspot.HubSpotConfig:
    if settings.hubspot_private_app_token is None:
        raise NotConfigured("HUBSPOT_PRIVATE_APP_TOKEN is not configured", system=hubspot.SYSTEM)
    return hubspot.HubSpotConfig(
        access_token=settings.hubspot_private_app_token,
        base_url=settings.hubspot_base_url or hubspot.DEFAULT_BASE_URL,
        timeout_seconds=settings.hubspot_timeout_seconds,
        requests_per_10s=settings.hubspot_requests_per_10s,
        searches_per_second=settings.hubspot_searches_per_second,
        write_recheck_seconds=settings.hubspot_write_recheck_seconds,
    )
