"""Each integration's typed config, built from the flat `Settings`.

The integrations know nothing of the app's settings: each client takes its own small config. A
setting a client cannot work without raises `NotConfigured` here, before any client is made.
"""

from __future__ import annotations

from app.core.settings import Settings
from integrations import brevo, claude, discord, embeddings, hubspot, notion, webhook
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


def notion_config(settings: Settings) -> notion.NotionConfig:
    if settings.notion_api_key is None:
        raise NotConfigured("NOTION_API_KEY is not configured", system=notion.SYSTEM)
    return notion.NotionConfig(
        api_key=settings.notion_api_key,
        base_url=settings.notion_base_url or notion.DEFAULT_BASE_URL,
        timeout_seconds=settings.notion_timeout_seconds,
        max_attempts=settings.notion_max_attempts,
        create_recheck_seconds=settings.notion_create_recheck_seconds,
        title_property=settings.notion_title_property,
        tags_property=settings.notion_tags_property,
        status_property=settings.notion_status_property,
        draft_status=settings.notion_draft_status,
        id_property=settings.notion_id_property,
        kb_database_id=settings.notion_kb_database_id,
    )


def embeddings_config(settings: Settings) -> embeddings.EmbeddingsConfig:
    return embeddings.EmbeddingsConfig(
        provider=settings.embeddings_provider,
        model=settings.embeddings_model,
        dimension=settings.embeddings_dimension,
        batch_size=settings.embeddings_batch_size,
        max_chars=settings.embeddings_max_chars,
        timeout_seconds=settings.embeddings_timeout_seconds,
        query_timeout_seconds=settings.embeddings_query_timeout_seconds,
        voyage_api_key=settings.voyage_api_key,
        voyage_base_url=settings.voyage_base_url,
        openai_api_key=settings.openai_api_key,
        openai_base_url=settings.openai_base_url,
    )


def brevo_config(settings: Settings) -> brevo.BrevoConfig:
    if settings.brevo_api_key is None or settings.brevo_sender_email is None:
        raise NotConfigured("BREVO_API_KEY and BREVO_SENDER_EMAIL must both be configured", system=brevo.SYSTEM)
    return brevo.BrevoConfig(
        api_key=settings.brevo_api_key,
        sender=brevo.Address(email=settings.brevo_sender_email, name=settings.brevo_sender_name),
        base_url=settings.brevo_base_url or brevo.DEFAULT_BASE_URL,
        timeout_seconds=settings.brevo_timeout_seconds,
    )


def discord_config(settings: Settings) -> discord.DiscordConfig:
    if settings.discord_webhook_url is None:
        raise NotConfigured("DISCORD_WEBHOOK_URL is not configured", system=discord.SYSTEM)
    return discord.DiscordConfig(
        webhook_url=settings.discord_webhook_url, timeout_seconds=settings.discord_timeout_seconds
    )


def webhook_config(settings: Settings) -> webhook.WebhookConfig:
    if not settings.webhook_post_url:
        raise NotConfigured("WEBHOOK_POST_URL is not configured", system=webhook.SYSTEM)
    return webhook.WebhookConfig(url=settings.webhook_post_url, timeout_seconds=settings.webhook_post_timeout_seconds)
