"""The Discord webhook client against a fake Discord on 127.0.0.1: the real payload shape, limits,
mentions, rate limits, retries and which failures may have posted a message."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from integrations.discord import (
    DiscordClient,
    DiscordConfig,
    Embed,
    EmbedField,
    LinkButton,
    WebhookMessage,
    render,
    webhook_unusable,
)
from integrations.discord_text import ELLIPSIS, ZWSP, fit, inert, utf16_len
from integrations.errors import CircuitOpen, InvalidRequest, OutcomeUnknown, PermanentError, RateLimited, TransientError
from integrations.resilience import CircuitBreaker
from tests.fake_discord import UNKNOWN_WEBHOOK, Answer, FakeDiscord, gateway_error, limit_violations, rate_limited

ROLE = "987654321098765432"


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


ClientFactory = Callable[..., DiscordClient]


@pytest.fixture
def client_for(sleeps: list[float]) -> Iterator[ClientFactory]:
    made: list[DiscordClient] = []

    def make(url: str, **options: Any) -> DiscordClient:
        options.setdefault("breaker", CircuitBreaker("discord", clock=lambda: 0.0))
        config = DiscordConfig(webhook_url=url, timeout_seconds=5)
        client = DiscordClient(config, sleep=sleeps.append, clock=lambda: 0.0, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def simple(content: str = "hello") -> WebhookMessage:
    return WebhookMessage(content=content, embeds=[Embed(title="t", description="d")])


# --- text ------------------------------------------------------------------------------------------
TRICKY = [
    "e\u0301" * 40,  # e + combining acute
    "\U0001f1fa\U0001f1f8\U0001f1eb\U0001f1f7" * 20,  # flags: pairs of regional indicators
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 " * 15,  # a ZWJ family
    "\U0001f44d\U0001f3fd" * 30,  # thumbs up + skin tone
    "\u2764\ufe0f" * 40,  # heart + variation selector
    "\U0001d400bc" * 40,  # astral letters (two UTF-16 units each)
]


@pytest.mark.parametrize("text", TRICKY, ids=["combining", "flags", "zwj", "skin-tone", "selector", "astral"])
def test_fit_never_splits_what_a_reader_sees_as_one_character(text: str) -> None:
    for limit in range(2, 60):
        out = fit(text, limit)
        assert utf16_len(out) <= limit and out.endswith(ELLIPSIS)
        kept = out.removesuffix(ELLIPSIS)
        assert text.startswith(kept)
        following = text[len(kept)]
        # the next character starts a new cluster: it is not a mark, joiner, selector or modifier
        assert unicodedata.category(following) not in ("Mn", "Mc", "Me")
        assert following not in "\u200d\ufe0f" and not 0x1F3FB <= ord(following) <= 0x1F3FF
        assert not kept.endswith("\u200d")
        flags = sum(1 for char in kept if 0x1F1E6 <= ord(char) <= 0x1F1FF)
        assert flags % 2 == 0


def test_fit_leaves_short_text_alone_and_cleans_what_discord_refuses() -> None:
    assert fit("  fine  ", 10) == "fine"
    assert fit("a\ud800b\x00c\x1bd\r\ne\tf", 100) == "a\ufffdbcd\ne\tf"


def test_inert_defuses_every_mention_form() -> None:
    text = inert("@everyone @HERE <@123> <@!456> <@&789> mail@example.com")
    for raw in ("@everyone", "@HERE", "<@1", "<@!", "<@&"):
        assert raw not in text
    assert f"@{ZWSP}everyone" in text and f"<@{ZWSP}&789>" in text and "mail@example.com" in text


# --- rendering -------------------------------------------------------------------------------------
def huge_message() -> WebhookMessage:
    blob = "word \U0001f600 e\u0301 @everyone <@&1> " * 2000
    embed = Embed(
        title=blob,
        description=blob,
        footer=blob,
        color=0xE74C3C,
        fields=[EmbedField(name=blob, value=blob) for _ in range(40)],
    )
    return WebhookMessage(
        content=blob,
        embeds=[embed] * 12,
        mention_role_id=ROLE,
        buttons=[LinkButton(label=blob, url="https://ops.example.com/a?t=x")] * 7,
    )


def test_render_respects_every_limit_of_a_huge_message() -> None:
    payload = render(huge_message())
    assert limit_violations(payload) == []
    assert len(payload["embeds"]) == 10 and len(payload["embeds"][0]["fields"]) == 25
    assert len(payload["components"][0]["components"]) == 5
    assert payload["content"].startswith(f"<@&{ROLE}> ") and payload["content"].endswith(ELLIPSIS)
    assert payload["allowed_mentions"] == {"parse": [], "roles": [ROLE]}
    assert "@everyone" not in str(payload) and "<@&1>" not in str(payload)


def test_render_locks_mentions_when_no_role_is_given() -> None:
    payload = render(WebhookMessage(content="<@&123> @here", embeds=[]))
    assert payload["allowed_mentions"] == {"parse": []}
    assert payload["content"] == f"<@{ZWSP}&123> @{ZWSP}here"
    assert payload["components"] == []


def test_render_refuses_a_button_url_discord_would_refuse() -> None:
    with pytest.raises(InvalidRequest, match="512"):
        render(WebhookMessage(buttons=[LinkButton(label="x", url="https://a.example/" + "a" * 600)]))
    with pytest.raises(InvalidRequest):
        render(WebhookMessage(buttons=[LinkButton(label="x", url="javascript:alert(1)")]))


def test_empty_field_texts_are_replaced_because_discord_refuses_them() -> None:
    payload = render(WebhookMessage(embeds=[Embed(fields=[EmbedField(name=" ", value="\x00")])]))
    assert limit_violations(payload) == []


# --- the client ------------------------------------------------------------------------------------
def test_execute_posts_with_wait_and_components_and_returns_the_message_id(
    discord: FakeDiscord,
    client_for: ClientFactory,
) -> None:
    message = simple()
    message.buttons = [LinkButton(label="Review", url="https://ops.example.com/approvals/1?t=abc")]
    message_id = client_for(discord.webhook_url).execute(message)
    [request] = discord.requests
    assert request.method == "POST" and request.query == {"wait": ["true"], "with_components": ["true"]}
    assert message_id in discord.messages
    assert request.body["components"] == [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 5, "label": "Review", "url": "https://ops.example.com/approvals/1?t=abc"}
            ],
        }
    ]
    assert request.body["allowed_mentions"] == {"parse": []}
    assert "http" not in request.body["content"]


def test_huge_message_is_accepted_by_a_discord_that_checks_limits(
    discord: FakeDiscord,
    client_for: ClientFactory,
) -> None:
    client_for(discord.webhook_url).execute(huge_message())
    [request] = discord.requests
    assert limit_violations(request.body) == []


def test_edit_patches_the_message_and_drops_the_buttons(discord: FakeDiscord, client_for: ClientFactory) -> None:
    client = client_for(discord.webhook_url)
    message = simple()
    message.buttons = [LinkButton(label="Review", url="https://ops.example.com/r")]
    message_id = client.execute(message)
    client.edit(message_id, simple("done"))
    edit = discord.edits()[0]
    assert edit.message_id == message_id and edit.query == {"with_components": ["true"]}
    assert discord.messages[message_id]["components"] == [] and discord.messages[message_id]["content"] == "done"
    with pytest.raises(InvalidRequest):
        client.edit("../../evil", simple())


def test_429_waits_for_retry_after_from_the_body(
    discord: FakeDiscord,
    client_for: ClientFactory,
    sleeps: list[float],
) -> None:
    discord.script(rate_limited(2.5, header="3"))
    client_for(discord.webhook_url).execute(simple())
    assert sleeps == [2.5]  # the float in the body is more precise than the header
    assert len(discord.posts()) == 2 and len(discord.messages) == 1


def test_429_falls_back_to_the_retry_after_header(
    discord: FakeDiscord,
    client_for: ClientFactory,
    sleeps: list[float],
) -> None:
    discord.script(rate_limited(None, header="4"))
    client_for(discord.webhook_url).execute(simple())
    assert sleeps == [4.0]


def test_a_long_429_is_left_to_the_outbox(discord: FakeDiscord, client_for: ClientFactory, sleeps: list[float]) -> None:
    discord.script(rate_limited(120.0))
    with pytest.raises(RateLimited) as caught:
        client_for(discord.webhook_url).execute(simple())
    assert caught.value.retry_after == 120.0 and sleeps == [] and len(discord.requests) == 1


def test_an_empty_bucket_is_waited_out_before_the_next_request(
    discord: FakeDiscord,
    client_for: ClientFactory,
    sleeps: list[float],
) -> None:
    discord.script(
        Answer(200, {"id": "1300000000000000999"}, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"})
    )
    client = client_for(discord.webhook_url)
    client.execute(simple())
    client.execute(simple())
    assert sleeps == [1.5] and len(discord.requests) == 2


@pytest.mark.parametrize("landed", [True, False], ids=["posted-anyway", "not-posted"])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_to_a_post_may_have_posted_so_it_is_outcome_unknown_and_not_retried(
    discord: FakeDiscord,
    client_for: ClientFactory,
    sleeps: list[float],
    status: int,
    landed: bool,
) -> None:
    discord.script(gateway_error(status, landed=landed))  # the client cannot tell these two apart
    with pytest.raises(OutcomeUnknown, match=f"HTTP {status} after sending"):
        client_for(discord.webhook_url).execute(simple())
    assert len(discord.posts()) == 1 and len(discord.messages) == int(landed) and sleeps == []


def test_posts_that_get_no_clear_answer_open_the_breaker(discord: FakeDiscord, client_for: ClientFactory) -> None:
    # not retried (they may have posted), but a Discord answering 502 to every post is down
    discord.script(*[gateway_error(502, landed=False)] * 5)
    client = client_for(discord.webhook_url, breaker=CircuitBreaker("discord", failure_threshold=5, clock=lambda: 0.0))
    for _ in range(5):
        with pytest.raises(OutcomeUnknown):
            client.execute(simple())
    with pytest.raises(CircuitOpen):
        client.execute(simple())
    assert len(discord.posts()) == 5


def test_5xx_to_an_edit_are_retried_with_backoff(
    discord: FakeDiscord, client_for: ClientFactory, sleeps: list[float]
) -> None:
    client = client_for(discord.webhook_url)
    message_id = client.execute(simple())
    discord.script(Answer(500), Answer(502))
    client.edit(message_id, simple("edited"))
    assert len(discord.edits()) == 3 and len(sleeps) == 2
    assert discord.messages[message_id]["content"] == "edited"


def test_persistent_5xx_to_an_edit_raises_a_transient_error(discord: FakeDiscord, client_for: ClientFactory) -> None:
    client = client_for(discord.webhook_url)
    message_id = client.execute(simple())
    discord.script(*[Answer(503)] * 3)
    with pytest.raises(TransientError, match="HTTP 503"):
        client.edit(message_id, simple("edited"))
    assert len(discord.edits()) == 3


def test_connection_refused_is_transient_and_nothing_was_sent(
    discord: FakeDiscord, client_for: ClientFactory, sleeps: list[float]
) -> None:
    url = discord.webhook_url
    discord.down()
    with pytest.raises(TransientError, match="connection failed") as caught:
        client_for(url).execute(simple())
    assert not isinstance(caught.value, OutcomeUnknown) and len(sleeps) == 2


def test_unknown_webhook_is_permanent_and_marks_the_webhook_unusable(
    discord: FakeDiscord,
    client_for: ClientFactory,
) -> None:
    discord.script(UNKNOWN_WEBHOOK)
    with pytest.raises(PermanentError) as caught:
        client_for(discord.webhook_url).execute(simple())
    assert webhook_unusable(caught.value) and len(discord.requests) == 1


def test_a_refused_payload_is_permanent_but_the_webhook_still_works(
    discord: FakeDiscord,
    client_for: ClientFactory,
) -> None:
    discord.script(Answer(400, {"message": "Invalid Form Body", "code": 50035}))
    with pytest.raises(PermanentError, match="Invalid Form Body") as caught:
        client_for(discord.webhook_url).execute(simple())
    assert not webhook_unusable(caught.value)


def test_no_secret_reaches_an_error_message(discord: FakeDiscord, client_for: ClientFactory) -> None:
    url = discord.webhook_url
    discord.down()
    with pytest.raises(TransientError) as caught:
        client_for(url).execute(simple())
    assert "fake-token" not in str(caught.value) and "fake-token" not in repr(caught.value.details)


def _failing_transport(error: type[httpx.TransportError]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return httpx.MockTransport(handler)


def test_a_post_whose_answer_was_lost_is_outcome_unknown_and_not_retried(client_for: ClientFactory) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("simulated", request=request)

    client = client_for("http://127.0.0.1:9/api/webhooks/1/t", transport=httpx.MockTransport(handler))
    with pytest.raises(OutcomeUnknown):
        client.execute(simple())
    assert len(calls) == 1


def test_an_edit_whose_answer_was_lost_is_retried(client_for: ClientFactory, sleeps: list[float]) -> None:
    client = client_for("http://127.0.0.1:9/api/webhooks/1/t", transport=_failing_transport(httpx.ReadTimeout))
    with pytest.raises(TransientError):
        client.edit("1300000000000000001", simple())
    assert len(sleeps) == 2


def test_a_post_that_never_connected_is_retried(client_for: ClientFactory, sleeps: list[float]) -> None:
    client = client_for("http://127.0.0.1:9/api/webhooks/1/t", transport=_failing_transport(httpx.ConnectTimeout))
    with pytest.raises(TransientError) as caught:
        client.execute(simple())
    assert not isinstance(caught.value, OutcomeUnknown) and len(sleeps) == 2


def test_a_2xx_without_a_message_id_is_outcome_unknown(discord: FakeDiscord, client_for: ClientFactory) -> None:
    discord.script(Answer(200, {"no": "id"}))
    with pytest.raises(OutcomeUnknown, match="no message id"):
        client_for(discord.webhook_url).execute(simple())
