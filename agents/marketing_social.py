"""The marketing agent's social posts: one per connected Buffer channel, drafted with the weekly
blog post to announce it, each its own `social.post` action the owner approves, edits or rejects.

The channels come from Buffer (`BufferClient.channels`), usable ones only (Buffer: locked channels
take no posts; a disconnected one needs the owner). The model is shown each channel's network and
text limit and writes no link: the blog post is still a Notion draft, so the owner adds its address
(the `link` field, editable on the review page) once it is published. A post that does not fit its
channel (too long, an unknown channel) is left out with the reason kept on the run; the others go.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.drafting import one_line, unsourced_flags
from agents.framework import Agent, AgentEnv, Proposal, Source
from agents.prompt import DataBlock
from app.core.models import ActionRequest
from app.core.settings import Settings
from app.kinds.social import SocialPostPayload
from integrations.buffer_models import Channel
from integrations.errors import IntegrationError

log = logging.getLogger(__name__)
ADD_THE_LINK = (
    "Before approving: once the blog post is published, put its address in `link` (it is added to the "
    "text, within the network's limit)."
)


class SocialPost(BaseModel):
    model_config = ConfigDict(extra="ignore")

    channel: str = Field(description="The ref of one Buffer channel (ch-N) from the data")
    text: str = Field(description="The post announcing the blog post, within that channel's limit; no link")


def social_channels(env: AgentEnv) -> tuple[dict[str, Channel], str | None]:
    """The usable channels by ref (ch-1, ...), or none and why (Buffer not set up, or unreadable:
    the blog post and newsletter still go)."""
    if env.settings.buffer_auth is None:
        return {}, None
    try:
        channels = env.clients.get(Settings.buffer_client).channels()
    except IntegrationError as exc:
        log.warning("marketing: Buffer's channels could not be read: %s", exc.message)
        return {}, f"no social posts: Buffer's channels could not be read ({exc.message})"
    return {f"ch-{n}": channel for n, channel in enumerate((c for c in channels if c.usable), start=1)}, None


def channels_block(channels: dict[str, Channel]) -> DataBlock:
    lines = [
        f"{ref}: {channel.network}, {channel.display_name or channel.name}, "
        + (f"at most {limit} characters" if (limit := channel.text_limit()) else "no stated limit")
        for ref, channel in channels.items()
    ]
    return DataBlock("buffer-channels (the social channels connected to Buffer)", "\n".join(lines))


def social_requests(
    agent: Agent[Any, Any, Any],
    env: AgentEnv,
    source: Source[str],
    proposal: Proposal,
    posts: Iterable[SocialPost],
    channels: dict[str, Channel],
    *,
    reasoning: str,
    topics: list[str],
    trusted: list[str],
) -> tuple[list[ActionRequest], list[str]]:
    """One request per channel the model wrote for (the first post per channel), and what was left out."""
    requests: list[ActionRequest] = []
    problems: list[str] = []
    done: set[str] = set()
    for post in posts:
        channel = channels.get(post.channel)
        if channel is None:
            problems.append(f"a post for {one_line(post.channel, 40)!r}, which is not a channel listed")
            continue
        if channel.id in done:
            continue
        text = post.text.strip()
        payload: dict[str, Any] = {
            "channel_id": channel.id,
            "network": channel.service,
            "channel_name": channel.display_name or channel.name,
            "max_characters": channel.max_characters,
            "text": text,
            "when": "queue",
        }
        try:
            SocialPostPayload.model_validate(payload)
        except ValidationError as exc:
            problems.append(f"the post for {channel.label} ({exc.errors()[0]['msg'].removeprefix('Value error, ')})")
            continue
        done.add(channel.id)
        summary = f"Post on {channel.label}: {one_line(text, 80)}"
        requests.append(
            agent.request(
                source,
                f"social-{channel.id}",
                kind="social.post",
                summary=summary,
                reasoning=f"{reasoning}\n{ADD_THE_LINK}",
                proposal=proposal,
                payload=payload,
                flags=unsourced_flags(env.settings, text, trusted),
                topics=topics,
            )
        )
    return requests, problems
