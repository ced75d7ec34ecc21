"""integrations/buffer_oauth.py against the fake Buffer's OAuth server: the authorization link with
PKCE S256, the code exchange, and refreshes that never spend a refresh token twice (Buffer revokes
the grant on reuse). The store here is tests/in_process.py's; the database's is held to the same
rules in tests/test_buffer_tokens.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from integrations.buffer import BufferClient, BufferConfig
from integrations.buffer_oauth import (
    BufferOAuth,
    BufferOAuthConfig,
    OAuthTokens,
    Pkce,
    ReconnectNeeded,
    TokenPair,
    authorization_url,
)
from integrations.errors import InvalidRequest, NotConfigured, TransientError
from tests.fake_buffer import CLIENT_ID, CLIENT_SECRET, ORG_ID, REDIRECT_URI, FakeBuffer
from tests.fake_buffer_oauth import TokenFault, s256
from tests.in_process import InProcessRateSlots, InProcessTokenStore

OPENED: list[BufferOAuth] = []


@pytest.fixture
def buffer() -> Iterator[FakeBuffer]:
    with FakeBuffer() as fake:
        yield fake
        while OPENED:
            OPENED.pop().close()
    assert fake.internal_errors == []


def oauth_config(fake: FakeBuffer, **overrides: object) -> BufferOAuthConfig:
    settings = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "auth_url": fake.auth_url,
        "timeout_seconds": 10,
        **overrides,
    }
    return BufferOAuthConfig.model_validate(settings)


def connected(fake: FakeBuffer) -> TokenPair:
    """A grant made through the real link and code exchange."""
    pkce = Pkce.new()
    config = oauth_config(fake)
    answer = httpx.get(authorization_url(config, state="s1", pkce=pkce))
    query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    assert query["state"] == "s1" and query["iss"] == fake.auth_url
    with closing(BufferOAuth(config)) as oauth:
        return oauth.exchange_code(query["code"], verifier=pkce.verifier)


def tokens(fake: FakeBuffer, store: InProcessTokenStore, **overrides: object) -> OAuthTokens:
    OPENED.append(BufferOAuth(oauth_config(fake, **overrides)))
    return OAuthTokens(OPENED[-1], store)


def test_the_link_asks_for_pkce_s256_offline_access_and_consent(buffer: FakeBuffer) -> None:
    pkce = Pkce.new()
    assert len(pkce.verifier) == 43 and pkce.challenge == s256(pkce.verifier)
    link = urlsplit(authorization_url(oauth_config(buffer), state="xyz", pkce=pkce))
    params = {k: v[0] for k, v in parse_qs(link.query).items()}
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"{buffer.auth_url}/auth"
    assert params == {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "posts:write posts:read account:read offline_access",
        "state": "xyz",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "prompt": "consent",
    }


def test_the_code_exchange_gives_a_refreshable_pair(buffer: FakeBuffer) -> None:
    pair = connected(buffer)
    assert pair.refresh_token is not None and pair.expires_in == 3600
    assert buffer.oauth.access_client(pair.access_token.get_secret_value()) == CLIENT_ID


def test_a_public_client_sends_no_secret_and_a_wrong_verifier_is_refused(buffer: FakeBuffer) -> None:
    buffer.oauth.register_client("public-app", None, (REDIRECT_URI,))
    config = oauth_config(buffer, client_id="public-app", client_secret=None)
    pkce = Pkce.new()
    answer = httpx.get(authorization_url(config, state="s", pkce=pkce))
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    with (
        closing(BufferOAuth(config)) as oauth,
        pytest.raises(InvalidRequest, match="invalid_grant"),
    ):
        oauth.exchange_code(code, verifier=Pkce.new().verifier)
    answer = httpx.get(authorization_url(config, state="s", pkce=pkce))
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    with closing(BufferOAuth(config)) as oauth:
        assert oauth.exchange_code(code, verifier=pkce.verifier).refresh_token is not None
    wrong = BufferOAuth(oauth_config(buffer, client_secret="wrong"))
    with closing(wrong), pytest.raises(NotConfigured, match="client id or secret"):
        wrong.exchange_code("whatever", verifier=pkce.verifier)


def test_a_token_with_time_left_is_used_without_refreshing(buffer: FakeBuffer) -> None:
    pair = connected(buffer)
    store = InProcessTokenStore(buffer.clock, pair)
    assert tokens(buffer, store).access_token() == pair.access_token.get_secret_value()
    assert buffer.oauth.refresh_calls == 0


def test_an_expiring_token_is_refreshed_once_and_the_pair_stored(buffer: FakeBuffer) -> None:
    pair = connected(buffer)
    store = InProcessTokenStore(buffer.clock, pair)
    buffer.clock.advance(3600 - 200)  # inside the 300-s margin
    fresh = tokens(buffer, store).access_token()
    assert fresh != pair.access_token.get_secret_value() and buffer.oauth.refresh_calls == 1
    assert store.pair is not None and store.pair.refresh_token != pair.refresh_token and store.lease is None
    assert tokens(buffer, store).access_token() == fresh and buffer.oauth.refresh_calls == 1


def test_threads_refreshing_at_once_make_one_refresh(buffer: FakeBuffer) -> None:
    pair = connected(buffer)
    store = InProcessTokenStore(buffer.clock, pair)
    buffer.clock.advance(3600)
    buffer.oauth.refresh_gate = threading.Event()
    got: list[str] = []
    racers = [threading.Thread(target=lambda: got.append(tokens(buffer, store).access_token())) for _ in range(4)]
    for racer in racers:
        racer.start()
    assert buffer.oauth.wait_refresh_calls(1)
    buffer.oauth.refresh_gate.set()
    for racer in racers:
        racer.join(10)
    assert len(got) == 4 and len(set(got)) == 1
    assert buffer.oauth.refresh_calls == 1 and buffer.oauth.revoked_grants() == []


@pytest.mark.parametrize("how", ["hold", "drop"])
def test_a_refresh_whose_answer_was_lost_is_never_sent_again(buffer: FakeBuffer, how: str) -> None:
    store = InProcessTokenStore(buffer.clock, connected(buffer))
    buffer.clock.advance(3600)
    buffer.oauth.faults.append(TokenFault("refresh_token", how))  # type: ignore[arg-type]
    with pytest.raises(ReconnectNeeded, match="answer was lost"):
        tokens(buffer, store, timeout_seconds=0.5).access_token()  # a held answer: waited for this long
    assert store.status == "reconnect_needed" and len(store.reconnects) == 1 and store.lease is None
    with pytest.raises(ReconnectNeeded):
        tokens(buffer, store).access_token()
    assert buffer.oauth.refresh_calls == 1 and buffer.oauth.reuse_detected == 0


def test_a_lease_that_ran_out_unfinished_means_reconnect(buffer: FakeBuffer) -> None:
    """A process killed between sending the refresh and storing its answer leaves its lease."""
    store = InProcessTokenStore(buffer.clock, connected(buffer))
    buffer.clock.advance(3600)
    start = store.begin_refresh(margin_seconds=300, lease_seconds=60)
    assert start.state == "refresh"
    assert store.begin_refresh(margin_seconds=300, lease_seconds=60).state == "busy"
    buffer.clock.advance(61)
    with pytest.raises(ReconnectNeeded, match="did not finish"):
        tokens(buffer, store).access_token()
    assert buffer.oauth.refresh_calls == 0


def test_a_refused_refresh_marks_the_grant(buffer: FakeBuffer) -> None:
    pair = connected(buffer)
    store = InProcessTokenStore(buffer.clock, pair)
    buffer.oauth.revoke_grant(next(iter(buffer.oauth.grants)))  # the user removed the app
    buffer.clock.advance(3600)
    with pytest.raises(ReconnectNeeded, match="invalid_grant"):
        tokens(buffer, store).access_token()
    assert store.status == "reconnect_needed"


def test_a_refresh_that_never_left_keeps_the_old_token(buffer: FakeBuffer) -> None:
    store = InProcessTokenStore(buffer.clock, connected(buffer))
    buffer.clock.advance(3600)
    with pytest.raises(TransientError, match="unreachable"):
        tokens(buffer, store, auth_url="http://127.0.0.1:9").access_token()
    assert store.status == "connected" and store.lease is None
    assert tokens(buffer, store).access_token() and buffer.oauth.refresh_calls == 1


def test_no_grant_is_not_configured(buffer: FakeBuffer) -> None:
    with pytest.raises(NotConfigured, match="opsdesk buffer connect"):
        tokens(buffer, InProcessTokenStore(buffer.clock)).access_token()


def test_an_api_401_to_an_oauth_token_marks_the_grant(buffer: FakeBuffer) -> None:
    store = InProcessTokenStore(buffer.clock, connected(buffer))
    client = BufferClient(
        BufferConfig(api_url=buffer.api_url, organization_id=ORG_ID),
        tokens=tokens(buffer, store),
        slots=InProcessRateSlots(lambda: buffer.clock().timestamp()),
        clock=buffer.clock,
    )
    with closing(client):
        assert len(client.channels()) == 4
        buffer.oauth.revoke_grant(next(iter(buffer.oauth.grants)))
        with pytest.raises(ReconnectNeeded):
            client.channels()
        assert store.status == "reconnect_needed"
        with pytest.raises(ReconnectNeeded):
            client.channels()
    assert len(buffer.calls("channels")) == 1  # the 401 is answered before any field runs


def test_pairs_keep_secrets_out_of_their_repr() -> None:
    pair = TokenPair(access_token=SecretStr("a"), refresh_token=SecretStr("r"), expires_in=3600)
    assert "'a'" not in repr(pair) and "'r'" not in repr(pair)
