"""integrations/buffer.py against the fake Buffer (tests/fake_buffer.py): channels, createPost in each
mode, every documented error shape mapped into integrations.errors, the shared rate windows, and a
createPost whose answer was lost never made twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from integrations.buffer import ApiKey, BufferClient, BufferConfig, BufferRefused, PostMaybeMade
from integrations.buffer_models import PostRequest
from integrations.buffer_oauth import ReconnectNeeded
from integrations.errors import AuthRevoked, NotConfigured, PermanentError, RateLimited, TransientError
from tests.fake_buffer import API_KEY, ORG_ID, FakeBuffer, Fault
from tests.fake_http import Reply
from tests.in_process import InProcessRateSlots


class Keys(ApiKey):
    def __init__(self, key: str) -> None:
        super().__init__(SecretStr(key))
        self.rejections: list[str] = []

    def rejected(self, reason: str) -> None:
        self.rejections.append(reason)


@pytest.fixture
def buffer() -> Iterator[FakeBuffer]:
    with FakeBuffer() as fake:
        yield fake
    assert fake.internal_errors == []


def client(fake: FakeBuffer, key: str = API_KEY, waits: list[float] | None = None, **config: object) -> BufferClient:
    settings = {"api_url": fake.api_url, "timeout_seconds": 10, **config}
    return BufferClient(
        BufferConfig.model_validate(settings),
        tokens=Keys(key),
        slots=InProcessRateSlots(lambda: fake.clock().timestamp()),
        sleep=(waits if waits is not None else []).append,
        clock=fake.clock,
    )


def test_channels_come_from_the_only_organization_with_their_text_limits(buffer: FakeBuffer) -> None:
    buffer.channel("mastodon").metadata = {"__typename": "MastodonMetadata", "maxCharacters": 5000, "serverUrl": "x"}
    buffer.channel("bluesky").is_locked = True
    with closing(client(buffer)) as buf:
        channels = {c.service: c for c in buf.channels()}
        assert buf.organization_id() == ORG_ID
    assert sorted(channels) == ["bluesky", "linkedin", "mastodon", "twitter"]
    assert channels["twitter"].text_limit() == 280 and channels["linkedin"].text_limit() == 3000
    assert channels["mastodon"].text_limit() == 5000  # the instance's own limit, from the API
    assert not channels["bluesky"].usable and channels["bluesky"].text_limit() == 300
    assert channels["twitter"].text_problem("x" * 281) == "X (Twitter) takes at most 280 characters; this text has 281"
    assert [name for name, _ in buffer.operations] == ["account", "channels"]


def test_several_organizations_need_the_setting(buffer: FakeBuffer) -> None:
    buffer.organizations.append({"id": "64f000000000000000000002", "name": "Other", "ownerEmail": "o@example.com"})
    with closing(client(buffer)) as buf, pytest.raises(NotConfigured, match="BUFFER_ORGANIZATION_ID"):
        buf.channels()
    with closing(client(buffer, organization_id=ORG_ID)) as buf:
        assert len(buf.channels()) == 4


def test_create_post_in_each_mode(buffer: FakeBuffer) -> None:
    twitter = buffer.channel("twitter").id
    due = datetime(2026, 12, 3, 17, 30, tzinfo=UTC)
    with closing(client(buffer)) as buf:
        queued = buf.create_post(PostRequest(channel_id=twitter, text="Queued"))
        now = buf.create_post(PostRequest(channel_id=twitter, text="Now", mode="shareNow"))
        timed = buf.create_post(
            PostRequest(
                channel_id=twitter,
                text="Timed",
                mode="customScheduled",
                due_at=due,
                image_url="https://cdn.example.com/a.png",
            )
        )
    assert (queued.status, now.status, timed.status) == ("scheduled", "sending", "scheduled")
    assert timed.due_at == due and timed.image_urls == ["https://cdn.example.com/a.png"]
    sent = buffer.calls("createPost")[2]["input"]
    assert (
        sent["dueAt"] == "2026-12-03T17:30:00.000Z"
        and sent["schedulingType"] == "automatic"
        and sent["source"] == "opsdesk"
    )
    assert sent["assets"][0]["image"]["url"] == "https://cdn.example.com/a.png"


@pytest.mark.parametrize(
    "typename", ["InvalidInputError", "NotFoundError", "UnauthorizedError", "LimitReachedError", "RestProxyError"]
)
def test_typed_mutation_errors_at_200_are_refusals_and_not_retried(buffer: FakeBuffer, typename: str) -> None:
    buffer.inject(
        Fault(
            "createPost",
            typed_error=typename,
            message="Nope",
            extra={"code": 1023} if typename == "RestProxyError" else {},
        )
    )
    with closing(client(buffer)) as buf, pytest.raises(BufferRefused) as refused:
        buf.create_post(PostRequest(channel_id=buffer.channel("twitter").id, text="Hi"))
    assert refused.value.message == f"buffer: {typename}: Nope"
    assert refused.value.details["typename"] == typename and not refused.value.retryable
    assert len(buffer.calls("createPost")) == 1


def test_an_unexpected_error_on_create_may_have_posted(buffer: FakeBuffer) -> None:
    buffer.inject(Fault("createPost", typed_error="UnexpectedError"))
    with closing(client(buffer)) as buf, pytest.raises(PostMaybeMade) as maybe:
        buf.create_post(PostRequest(channel_id=buffer.channel("twitter").id, text="Hi"))
    assert maybe.value.retry_after == 60.0 and len(buffer.calls("createPost")) == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("FORBIDDEN", BufferRefused),
        ("NOT_FOUND", BufferRefused),
        ("UNAUTHORIZED", ReconnectNeeded),
        ("RATE_LIMIT_EXCEEDED", RateLimited),
    ],
)
def test_error_codes_at_200_map_into_the_tree(buffer: FakeBuffer, code: str, error: type[Exception]) -> None:
    buffer.inject(Fault("channels", code=code, message="said Buffer"))
    with closing(client(buffer, organization_id=ORG_ID)) as buf, pytest.raises(error):
        buf.channels()
    assert len(buffer.calls("channels")) == 1


def test_reads_are_retried_after_unexpected_and_5xx(buffer: FakeBuffer) -> None:
    buffer.inject(Fault("channels", code="UNEXPECTED"), Fault("channels", reply=Reply(503, b"busy")))
    waits: list[float] = []
    with closing(client(buffer, organization_id=ORG_ID, waits=waits)) as buf:
        assert len(buf.channels()) == 4
    assert len(buffer.calls("channels")) == 3 and len(waits) == 2


def test_a_refused_key_is_auth_revoked_and_told_to_the_token_source(buffer: FakeBuffer) -> None:
    for style in ("http401", "graphql"):
        buffer.bad_token_style = style  # type: ignore[assignment]
        buf = client(buffer, key="buf_wrong", organization_id=ORG_ID)
        with closing(buf), pytest.raises(AuthRevoked, match="refused the credentials"):
            buf.channels()
        assert isinstance(buf.tokens, Keys) and len(buf.tokens.rejections) == 1


def test_a_429_waits_for_the_reset_buffer_names(buffer: FakeBuffer) -> None:
    buffer.limits = [("15m", 2, 900)]
    waits: list[float] = []
    with closing(client(buffer, organization_id=ORG_ID, waits=waits)) as buf:
        buf.channels()
        buf.channels()
        with pytest.raises(RateLimited) as limited:
            buf.channels()
    assert limited.value.retry_after == 900 and waits == []  # longer than the in-process wait: the caller's


def test_the_shared_windows_stop_calls_before_buffer_must(buffer: FakeBuffer) -> None:
    slots = InProcessRateSlots(lambda: buffer.clock().timestamp())
    config = BufferConfig(api_url=buffer.api_url, organization_id=ORG_ID, requests_per_day=3)
    processes = [BufferClient(config, tokens=Keys(API_KEY), slots=slots, sleep=[].append) for _ in range(2)]
    processes[0].channels()
    processes[1].channels()
    processes[0].channels()
    with pytest.raises(RateLimited, match="24-hour allowance") as limited:
        processes[1].channels()
    assert limited.value.retry_after is not None and limited.value.retry_after > 30
    assert len(buffer.calls("channels")) == 3
    for process in processes:
        process.close()


@pytest.mark.parametrize("how", ["hold", "drop"])
def test_a_lost_create_is_looked_up_never_sent_twice(buffer: FakeBuffer, how: str) -> None:
    twitter = buffer.channel("twitter")
    buffer.add_post(twitter, "Launch day! https://ex.com/a", via="api", created_at=buffer.clock() - timedelta(hours=2))
    buffer.add_post(twitter, "Launch day! https://ex.com/a", via="buffer")  # same text, made in Buffer's app
    request = PostRequest(
        channel_id=twitter.id, text="Launch day! https://ex.com/a", image_url="https://c.example/i.png"
    )
    attempted = buffer.clock()
    buffer.inject(Fault("createPost", lost=how))  # type: ignore[arg-type]
    with closing(client(buffer, timeout_seconds=0.5)) as impatient, pytest.raises(PostMaybeMade) as maybe:
        impatient.create_post(request)  # a held answer is waited for only this long
    assert maybe.value.retry_after == 60.0 and len(buffer.calls("createPost")) == 1
    with closing(client(buffer)) as buf:
        [made] = [p for p in buffer.created_posts() if p.created_at >= attempted]
        found = buf.find_post(request, attempted_at=attempted)
        assert found is not None and found.id == made.id
        other = request.model_copy(update={"text": "Another text"})
        assert buf.find_post(other, attempted_at=attempted) is None
        other_image = request.model_copy(update={"image_url": "https://c.example/j.png"})
        assert buf.find_post(other_image, attempted_at=attempted) is None


def test_the_lookup_masks_urls_and_pages_through_the_channel(buffer: FakeBuffer) -> None:
    twitter = buffer.channel("twitter")
    attempted = buffer.clock()
    buffer.add_post(twitter, "Read it: https://buff.ly/3xYz", via="api")
    for n in range(60):
        buffer.add_post(twitter, f"Noise {n}", via="api")
    request = PostRequest(channel_id=twitter.id, text="Read it: https://example.com/blog/long-post")
    with closing(client(buffer)) as buf:
        assert buf.find_post(request, attempted_at=attempted) is not None
    assert [call["first"] for call in buffer.calls("posts")] == [50, 50]


def test_a_failing_lookup_is_an_error_not_a_none(buffer: FakeBuffer) -> None:
    buffer.inject(*[Fault("posts", reply=Reply(502, b"bad gateway")) for _ in range(3)])
    request = PostRequest(channel_id=buffer.channel("twitter").id, text="Hi")
    with closing(client(buffer, organization_id=ORG_ID)) as buf, pytest.raises(TransientError):
        buf.find_post(request, attempted_at=buffer.clock())


def test_invalid_graphql_is_a_refusal(buffer: FakeBuffer) -> None:
    request = PostRequest(channel_id=buffer.channel("twitter").id, text="Hi")
    with closing(client(buffer)) as buf, pytest.raises(PermanentError):
        buf._graphql("bad", "query { nope }", {})
    assert request.variables()["input"]["assets"] == []


def test_a_post_request_needs_a_time_exactly_when_custom_scheduled() -> None:
    with pytest.raises(ValueError, match="customScheduled"):
        PostRequest(channel_id="c", text="t", mode="customScheduled")
    with pytest.raises(ValueError, match="customScheduled"):
        PostRequest(channel_id="c", text="t", due_at=datetime(2026, 12, 3, tzinfo=UTC))
