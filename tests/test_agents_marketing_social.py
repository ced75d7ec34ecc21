"""The marketing agent's social posts: with the weekly blog post, one `social.post` per usable Buffer
channel (each its own MEDIUM action), the channels and their limits shown to the model, a post that
does not fit its channel left out with the reason kept, and no posts without Buffer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from app.core.database import Database
from tests.agent_world import World, agent_world
from tests.fake_buffer import API_KEY, FakeBuffer
from tests.test_agents_marketing import DAY, phoenix, plan, set_clock


@pytest.fixture
def world(db: Database, database_url: str, sql: psycopg.Connection, tmp_path: Path) -> Iterator[World]:
    with agent_world(db, database_url, sql, tmp_path) as made:
        set_clock(sql, phoenix(DAY, 10))
        yield made


@pytest.fixture
def buffer() -> Iterator[FakeBuffer]:
    with FakeBuffer() as fake:
        yield fake
    assert fake.internal_errors == []


def social(*posts: tuple[str, str]) -> list[dict[str, str]]:
    return [{"channel": channel, "text": text} for channel, text in posts]


def test_one_post_per_channel_each_its_own_action(world: World, buffer: FakeBuffer) -> None:
    world.contact("ann@example.com", "Ann", hs_marketable_status="true")
    buffer.channel("bluesky").is_locked = True  # takes no posts: not offered
    posts = social(
        ("ch-1", "New on the blog: how shipping works."),
        ("ch-2", "We wrote up how shipping works, from order to doorstep."),
        ("ch-3", "x" * 501),  # Mastodon: 500
        ("ch-9", "A channel that was never listed"),
        ("ch-1", "A second post for the same channel"),
    )
    world.answer(plan([], social=posts))
    report = world.run("marketing", buffer_api_key=SecretStr(API_KEY), buffer_api_url=buffer.api_url)
    prompt = world.prompts()[0]
    assert "ch-1: X (Twitter), opsdesk, at most 280 characters" in prompt
    assert "ch-3: Mastodon, opsdesk, at most 500 characters" in prompt and "Bluesky" not in prompt
    kinds = sorted(a.kind for a in report.actions)
    assert kinds == ["email.campaign", "notion.blog_draft", "social.post", "social.post"]
    made = world.actions("social.post")
    assert {(a["requested_action"]["network"], a["risk_level"], a["status"]) for a in made} == {
        ("twitter", "MEDIUM", "pending"),
        ("linkedin", "MEDIUM", "pending"),
    }
    assert all(a["requested_action"]["when"] == "queue" and a["requested_action"]["link"] is None for a in made)
    assert all("put its address in `link`" in a["reasoning"] for a in made)
    [refusal] = report.refused
    assert "Mastodon: opsdesk" in refusal.reason and "at most 500 characters" in refusal.reason
    assert "'ch-9', which is not a channel listed" in refusal.reason
    assert buffer.created_posts() == []  # nothing posts before a person approves


def test_a_link_in_a_post_that_no_source_gave_is_flagged(world: World, buffer: FakeBuffer) -> None:
    world.answer(plan([], newsletter=None, social=social(("ch-2", "Read it at https://evil.example/win"))))
    world.run("marketing", buffer_api_key=SecretStr(API_KEY), buffer_api_url=buffer.api_url)
    [post] = world.actions("social.post")
    assert any(reason["dimension"] == "content" for reason in post["risk_reasons"])


def test_no_posts_without_buffer_or_without_a_blog_post(world: World, buffer: FakeBuffer) -> None:
    world.answer(plan([], newsletter=None, social=social(("ch-1", "Hello"))))
    world.run("marketing")
    assert "buffer-channels" not in world.prompts()[0] and world.actions("social.post") == []
    set_clock(world.sql, phoenix(DAY.replace(day=DAY.day + 7), 10))
    world.answer(plan([], ref="week-2026-w50", blog=None, social=social(("ch-1", "Hello"))))
    world.run("marketing", buffer_api_key=SecretStr(API_KEY), buffer_api_url=buffer.api_url)
    assert world.actions("social.post") == []


def test_buffer_unreadable_leaves_the_blog_and_says_why(world: World, buffer: FakeBuffer) -> None:
    world.answer(plan([], newsletter=None, social=social(("ch-1", "Hello"))))
    report = world.run("marketing", buffer_api_key=SecretStr("buf_revoked"), buffer_api_url=buffer.api_url)
    assert [a.kind for a in report.actions] == ["notion.blog_draft"]
    [refusal] = report.refused
    assert refusal.reason.startswith("no social posts: Buffer's channels could not be read")
