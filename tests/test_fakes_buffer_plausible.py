"""The fake Buffer and the fake Plausible, tested with plain httpx: a fake that answers wrong makes
every integration test built on it wrong. Each test states the documented behaviour it pins."""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fake_buffer import API_KEY, CLIENT_ID, CLIENT_SECRET, ORG_ID, REDIRECT_URI, FakeBuffer, Fault
from tests.fake_buffer_oauth import ManualClock, TokenFault, s256
from tests.fake_http import Reply
from tests.fake_plausible import API_KEY as PLAUSIBLE_KEY
from tests.fake_plausible import FakePlausible

CREATE = """mutation CreatePost($input: CreatePostInput!) {
  createPost(input: $input) {
    __typename
    ... on PostActionSuccess { post { id text status dueAt createdAt shareMode channelId assets { type source } } }
    ... on RestProxyError { link code }
    ... on MutationError { message }
  }
}"""
POSTS = """query Posts($input: PostsInput!, $first: Int, $after: String) {
  posts(input: $input, first: $first, after: $after) {
    edges { cursor node { id text status createdAt dueAt channelId } }
    pageInfo { hasNextPage endCursor hasPreviousPage }
  }
}"""
VERIFIER = "v" * 43 + "-._~0123456789"
HTTP = httpx.Client(timeout=5)  # one client: a fresh one per request costs 40 ms of TLS set-up


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    HTTP.close()


@pytest.fixture
def buffer() -> Iterator[FakeBuffer]:
    with FakeBuffer() as fake:
        yield fake
    assert fake.internal_errors == []


def gql(fake: FakeBuffer, query: str, token: str = API_KEY, timeout: float = 5, **variables: Any) -> httpx.Response:
    return HTTP.post(
        fake.api_url,
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def create(fake: FakeBuffer, timeout: float = 5, **fields: Any) -> httpx.Response:
    payload = {
        "channelId": fake.channel("twitter").id,
        "text": "Hello",
        "schedulingType": "automatic",
        "mode": "addToQueue",
        **fields,
    }
    return gql(fake, CREATE, timeout=timeout, input=payload)


# --- Buffer: GraphQL ---------------------------------------------------------------------------------
def test_buffer_answers_only_the_selected_fields_and_refuses_unknown_ones(buffer: FakeBuffer) -> None:
    orgs = gql(buffer, "query { account { organizations { id name } } }")
    assert orgs.json() == {"data": {"account": {"organizations": [{"id": ORG_ID, "name": "My Organization"}]}}}
    channels = gql(
        buffer,
        """query Channels($org: OrganizationId!) { channels(input: {organizationId: $org}) {
        id service isLocked metadata { ... on MastodonMetadata { maxCharacters } } } }""",
        org=ORG_ID,
    ).json()
    assert [c["service"] for c in channels["data"]["channels"]] == ["twitter", "linkedin", "mastodon", "bluesky"]
    assert channels["data"]["channels"][2]["metadata"] == {"maxCharacters": 500}
    assert set(channels["data"]["channels"][0]) == {"id", "service", "isLocked", "metadata"}
    inline = gql(buffer, f'query {{ channels(input: {{ organizationId: "{ORG_ID}" }}) {{ name }} }}')
    assert len(inline.json()["data"]["channels"]) == 4  # literal arguments, as Buffer's guides write them
    for query, message in [
        ("query { account { nickname } }", "Cannot query field 'nickname' on type 'Account'."),
        (
            "mutation($i: CreatePostInput!) { createPost(input: $i) { message } }",
            "Cannot query field 'message' on type 'PostActionPayload'. Did you mean to use an "
            "inline fragment on 'MutationError'",
        ),
        ("query { account }", "Field 'account' of type 'Account!' must have a selection of subfields."),
    ]:
        refused = gql(buffer, query)
        assert refused.status_code == 400
        [error] = refused.json()["errors"]
        assert error["message"].startswith(message)
        assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert gql(buffer, "query { account { id ").json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert gql(buffer, "query { ideas(input: {}) { edges } }").status_code == 501  # loud, never a guess
    assert gql(buffer, "query { account { organizations { limits { channels } } } }").status_code == 501
    geolocation = {"instagram": {"type": "post", "shouldShareToFeed": True, "geolocation": {"id": "1"}}}
    assert create(buffer, channelId=buffer.channel("linkedin").id, metadata=geolocation).status_code == 501


def test_buffer_creates_posts_as_each_mode_does(buffer: FakeBuffer) -> None:
    queued = create(buffer).json()["data"]["createPost"]
    assert queued["__typename"] == "PostActionSuccess"
    assert queued["post"] | {"id": "x"} == {
        "id": "x",
        "text": "Hello",
        "status": "scheduled",
        "shareMode": "addToQueue",
        "assets": [],
        "dueAt": "2026-12-02T17:00:00.000Z",
        "createdAt": "2026-12-02T16:00:00.000Z",
        "channelId": buffer.channel("twitter").id,
    }
    at = create(
        buffer,
        mode="customScheduled",
        dueAt="2026-12-03T09:00:00-07:00",
        assets=[{"image": {"url": "https://cdn.example.com/a.png"}}],
    ).json()["data"]["createPost"]["post"]
    assert (at["dueAt"], at["assets"]) == (
        "2026-12-03T16:00:00.000Z",
        [{"type": "image", "source": "https://cdn.example.com/a.png"}],
    )
    assert create(buffer, mode="shareNow").json()["data"]["createPost"]["post"]["status"] == "sending"
    assert create(buffer, saveToDraft=True).json()["data"]["createPost"]["post"]["status"] == "draft"
    mastodon = buffer.channel("mastodon").id
    literal = gql(
        buffer,
        'mutation { createPost(input: { text: "Hello from the Buffer API!", channelId: "MASTODON", '
        "schedulingType: automatic, mode: addToQueue }) { ... on PostActionSuccess { post { id text "
        "dueAt } } ... on MutationError { message } } }".replace("MASTODON", mastodon),
    )
    assert literal.json()["data"]["createPost"]["post"]["dueAt"] == "2026-12-02T17:00:00.000Z"  # Buffer's own example
    assert len(buffer.created_posts()) == 5 and len(buffer.calls("createPost")) == 5


@pytest.mark.parametrize(
    ("fields", "typename", "message"),
    [
        ({"text": "  "}, "InvalidInputError", "Text is required"),
        ({"channelId": "0" * 24}, "NotFoundError", "Channel not found"),
        ({"mode": "customScheduled"}, "InvalidInputError", "dueAt is required when mode is customScheduled"),
        (
            {
                "assets": [{"image": {"url": "https://cdn.example.com/a.png"}}],
                "channelId": "linkedin",
                "metadata": {"linkedin": {"linkAttachment": {"url": "https://example.com"}}},
            },
            "InvalidInputError",
            "metadata linkAttachment cannot be combined with assets",
        ),
    ],
)
def test_buffer_refuses_bad_posts_with_typed_errors_at_http_200(
    buffer: FakeBuffer, fields: dict[str, Any], typename: str, message: str
) -> None:
    if fields.get("channelId") == "linkedin":
        fields["channelId"] = buffer.channel("linkedin").id
    answer = create(buffer, **fields)
    assert answer.status_code == 200
    assert answer.json() == {"data": {"createPost": {"__typename": typename, "message": message}}}
    assert buffer.created_posts() == []


@pytest.mark.parametrize(
    "typename",
    [
        "NotFoundError",
        "UnauthorizedError",
        "UnexpectedError",
        "RestProxyError",
        "LimitReachedError",
        "InvalidInputError",
    ],
)
def test_buffer_answers_every_documented_mutation_error(buffer: FakeBuffer, typename: str) -> None:
    extra = {"link": "https://support.buffer.com/x", "code": 1023} if typename == "RestProxyError" else {}
    buffer.inject(Fault("createPost", typed_error=typename, message="No", extra=extra))
    assert create(buffer).json() == {"data": {"createPost": {"__typename": typename, "message": "No", **extra}}}
    buffer.inject(Fault("createPost", typed_error=typename, message="No", extra=extra))
    only_success = gql(
        buffer,
        "mutation($i: CreatePostInput!) { createPost(input: $i) { ... on PostActionSuccess { post { id } } } }",
        i={"channelId": buffer.channel("twitter").id, "text": "x", "schedulingType": "automatic", "mode": "addToQueue"},
    )
    assert only_success.json() == {"data": {"createPost": {}}}  # why Buffer says: always select MutationError
    assert buffer.created_posts() == []


@pytest.mark.parametrize("code", ["UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "UNEXPECTED", "RATE_LIMIT_EXCEEDED"])
def test_buffer_answers_system_errors_in_the_errors_array(buffer: FakeBuffer, code: str) -> None:
    buffer.inject(Fault("createPost", code=code, message="Nope"))
    answer = create(buffer)
    assert answer.status_code == 200
    [error] = answer.json()["errors"]
    assert answer.json()["data"] is None
    assert (error["message"], error["path"], error["extensions"]) == ("Nope", ["createPost"], {"code": code})


def test_buffer_raises_forbidden_and_not_found_itself(buffer: FakeBuffer) -> None:
    other = gql(buffer, 'query { channels(input: {organizationId: "64f0000000000000000000ff"}) { id } }').json()
    assert (other["data"], other["errors"][0]["extensions"]["code"]) == (None, "FORBIDDEN")
    missing = gql(buffer, 'query { post(input: {id: "abc"}) { id } }').json()
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    bad = create(buffer, colour="red")
    assert (bad.status_code, bad.json()["errors"][0]["extensions"]["code"]) == (400, "BAD_USER_INPUT")
    naive = create(buffer, dueAt="2026-12-03T09:00:00", mode="customScheduled").json()  # no offset
    assert (naive["data"], naive["errors"][0]["extensions"]["code"]) == (None, "BAD_USER_INPUT")


def test_buffer_authentication_failures(buffer: FakeBuffer) -> None:
    anonymous = HTTP.post(buffer.api_url, json={"query": "{ account { id } }"})
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "errors": [
            {"message": "An authentication JWT or Access Token is required", "extensions": {"code": "UNAUTHENTICATED"}}
        ]
    }
    assert gql(buffer, "{ account { id } }", token="wrong").status_code == 401
    buffer.bad_token_style = "graphql"
    other_style = gql(buffer, "{ account { id } }", token="wrong")
    assert (other_style.status_code, other_style.json()["errors"][0]["extensions"]["code"]) == (200, "UNAUTHORIZED")


def test_buffer_rate_limits_per_client_over_rolling_windows(buffer: FakeBuffer) -> None:
    buffer.limits = [("15m", 2, 900), ("24h", 5, 86_400)]
    clock = buffer.clock
    assert isinstance(clock, ManualClock)
    first = gql(buffer, "{ account { id } }")
    assert first.headers["RateLimit-Limit"] == "2" and first.headers["RateLimit-Remaining"] == "1"
    assert first.headers["RateLimit-Reset"] == "2026-12-02T16:15:00.000Z"
    clock.advance(60)
    gql(buffer, "{ account { id } }")
    refused = gql(buffer, "{ account { id } }")
    assert refused.status_code == 429 and "Retry-After" not in refused.headers
    assert refused.json() == {
        "errors": [
            {
                "message": "Too many requests from this client. Please try again later.",
                "extensions": {"code": "RATE_LIMIT_EXCEEDED", "limitType": "CLIENT_ACCOUNT", "retryAfter": 840},
            }
        ]
    }
    buffer.retry_after_header = True
    assert gql(buffer, "{ account { id } }").headers["Retry-After"] == "840"
    clock.advance(840)
    assert gql(buffer, "{ account { id } }").status_code == 200  # the oldest request left the window
    assert len(buffer.calls("account")) == 3  # refused requests did no work


def test_buffer_lists_posts_with_cursors_filters_and_sorting(buffer: FakeBuffer) -> None:
    twitter, linkedin = buffer.channel("twitter"), buffer.channel("linkedin")
    start = datetime(2026, 11, 30, tzinfo=UTC)
    made = [
        buffer.add_post(twitter if n % 2 == 0 else linkedin, f"post {n}", created_at=start + timedelta(hours=n))
        for n in range(5)
    ]
    seen, after = [], None
    while True:
        page = gql(buffer, POSTS, input={"organizationId": ORG_ID}, first=2, after=after).json()["data"]["posts"]
        seen += [edge["node"]["text"] for edge in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is False
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["post 4", "post 3", "post 2", "post 1", "post 0"]  # newest first unless sorted otherwise
    filtered = gql(
        buffer,
        POSTS,
        input={
            "organizationId": ORG_ID,
            "filter": {"channelIds": [twitter.id], "createdAt": {"start": "2026-11-30T01:00:00Z"}},
            "sort": [{"field": "createdAt", "direction": "asc"}],
        },
    ).json()["data"]["posts"]["edges"]
    assert [e["node"]["id"] for e in filtered] == [made[2].id, made[4].id]
    limits = gql(
        buffer,
        "query($i: DailyPostingLimitsInput!) { dailyPostingLimits(input: $i) { channelId sent "
        "scheduled limit isAtLimit } }",
        i={"channelIds": [twitter.id], "date": "2026-11-29T12:00:00Z"},
    )
    assert limits.json()["data"]["dailyPostingLimits"] == [
        {"channelId": twitter.id, "sent": 3, "scheduled": 0, "limit": None, "isAtLimit": False}
    ]  # Phoenix's Nov 29


@pytest.mark.parametrize("how", ["hold", "drop"])
def test_buffer_can_lose_the_answer_of_a_post_it_made(buffer: FakeBuffer, how: str) -> None:
    buffer.inject(Fault("createPost", lost=how))  # type: ignore[arg-type]
    with pytest.raises(httpx.ReadTimeout if how == "hold" else httpx.RemoteProtocolError):
        create(buffer, timeout=0.3)
    assert buffer.lost.is_set() and buffer.lost_answers == 1
    [post] = buffer.created_posts()
    found = gql(buffer, POSTS, input={"organizationId": ORG_ID, "filter": {"channelIds": [post.channel.id]}}).json()
    assert [e["node"]["text"] for e in found["data"]["posts"]["edges"]] == ["Hello"]


def test_buffer_answers_a_scripted_raw_reply(buffer: FakeBuffer) -> None:
    buffer.inject(Fault("createPost", reply=Reply(502, b"<html>Bad Gateway</html>")))
    assert create(buffer).status_code == 502 and buffer.created_posts() == []


# --- Buffer: OAuth ----------------------------------------------------------------------------------
def authorize(fake: FakeBuffer, **overrides: str) -> dict[str, str]:
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "state": "st4te",
        "scope": "posts:write posts:read account:read offline_access",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "prompt": "consent",
        **overrides,
    }
    answer = HTTP.get(f"{fake.auth_url}/auth", params=params)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def token(fake: FakeBuffer, **form: str) -> httpx.Response:
    return HTTP.post(f"{fake.auth_url}/token", data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form})


def connect(fake: FakeBuffer) -> dict[str, Any]:
    code = authorize(fake)["code"]
    return token(
        fake, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI, code_verifier=VERIFIER
    ).json()


def test_buffer_oauth_discovery_and_authorization_redirects(buffer: FakeBuffer) -> None:
    discovery = HTTP.get(f"{buffer.auth_url}/.well-known/openid-configuration").json()
    assert discovery["token_endpoint"] == f"{buffer.auth_url}/token"
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert authorize(buffer).keys() == {"code", "state", "iss"}
    assert authorize(buffer, code_challenge="")["error"] == "invalid_request"  # PKCE is required
    assert authorize(buffer, scope="posts:write admin")["error"] == "invalid_scope"
    buffer.oauth.deny_next = True
    assert authorize(buffer) | {"iss": ""} == {
        "error": "access_denied",
        "state": "st4te",
        "iss": "",
        "error_description": "End-User aborted interaction",
    }
    assert HTTP.get(f"{buffer.auth_url}/auth", params={"client_id": "nobody"}).json()["error"] == "invalid_client"


def test_buffer_oauth_code_exchange_checks_pkce_secret_expiry_and_reuse(buffer: FakeBuffer) -> None:
    clock = buffer.clock
    assert isinstance(clock, ManualClock)
    pair = connect(buffer)
    assert pair.keys() == {"access_token", "refresh_token", "token_type", "expires_in", "scope"}
    assert (pair["token_type"], pair["expires_in"]) == ("Bearer", 3600)
    assert gql(buffer, "{ account { id } }", token=pair["access_token"]).status_code == 200
    code = authorize(buffer)["code"]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    assert token(buffer, **exchange, code_verifier="w" * 43).json() == {
        "error": "invalid_grant",
        "error_description": "grant request is invalid",
    }
    bad_secret = token(buffer, **exchange, code_verifier=VERIFIER, client_secret="guess")
    assert (bad_secret.status_code, bad_secret.json()["error"]) == (401, "invalid_client")
    assert token(buffer, **exchange, code_verifier=VERIFIER).status_code == 200
    assert token(buffer, **exchange, code_verifier=VERIFIER).status_code == 400  # a code is single-use
    late = authorize(buffer)["code"]
    clock.advance(61)
    assert token(buffer, **exchange | {"code": late}, code_verifier=VERIFIER).json()["error"] == "invalid_grant"
    no_consent = authorize(buffer, prompt="")["code"]
    assert "refresh_token" not in token(buffer, **exchange | {"code": no_consent}, code_verifier=VERIFIER).json()


def test_buffer_refresh_tokens_rotate_and_a_reused_one_revokes_the_grant(buffer: FakeBuffer) -> None:
    clock = buffer.clock
    assert isinstance(clock, ManualClock)
    first = connect(buffer)
    clock.advance(3600)
    assert gql(buffer, "{ account { id } }", token=first["access_token"]).status_code == 401  # expired
    second = token(buffer, grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert gql(buffer, "{ account { id } }", token=second["access_token"]).status_code == 200
    reused = token(buffer, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert gql(buffer, "{ account { id } }", token=second["access_token"]).status_code == 401  # all revoked
    assert token(buffer, grant_type="refresh_token", refresh_token=second["refresh_token"]).status_code == 400
    assert (buffer.oauth.refresh_calls, buffer.oauth.refreshes, buffer.oauth.reuse_detected) == (3, 1, 1)
    assert len(buffer.oauth.revoked_grants()) == 1


def test_buffer_grants_made_for_set_up_work_until_the_user_revokes_the_app(buffer: FakeBuffer) -> None:
    pair = buffer.oauth.issue(CLIENT_ID)
    assert gql(buffer, "{ account { id } }", token=str(pair["access_token"])).status_code == 200
    [grant] = buffer.oauth.grants
    buffer.oauth.revoke_grant(grant)
    assert gql(buffer, "{ account { id } }", token=str(pair["access_token"])).status_code == 401
    assert token(buffer, grant_type="refresh_token", refresh_token=str(pair["refresh_token"])).status_code == 400


def test_buffer_racing_refreshes_with_one_token_revoke_the_grant(buffer: FakeBuffer) -> None:
    pair = connect(buffer)
    buffer.oauth.refresh_gate = threading.Event()
    answers: list[int] = []
    racers = [
        threading.Thread(
            target=lambda: answers.append(
                token(buffer, grant_type="refresh_token", refresh_token=pair["refresh_token"]).status_code
            )
        )
        for _ in range(3)
    ]
    for racer in racers:
        racer.start()
    assert buffer.oauth.wait_refresh_calls(3)
    buffer.oauth.refresh_gate.set()
    for racer in racers:
        racer.join(5)
    assert sorted(answers) == [200, 400, 400] and buffer.oauth.revoked_grants() != []


def test_buffer_can_lose_the_answer_of_a_refresh_it_made(buffer: FakeBuffer) -> None:
    pair = connect(buffer)
    buffer.oauth.faults.append(TokenFault("refresh_token", "drop"))
    with pytest.raises(httpx.RemoteProtocolError):
        token(buffer, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert buffer.oauth.refreshes == 1 and buffer.oauth.lost_answers == 1  # it rotated: the old token is spent
    assert token(buffer, grant_type="refresh_token", refresh_token=pair["refresh_token"]).status_code == 400
    assert buffer.oauth.revoked_grants() != []


# --- Plausible --------------------------------------------------------------------------------------
@pytest.fixture
def plausible() -> Iterator[FakePlausible]:
    with FakePlausible(timezone="Europe/Berlin") as fake:
        yield fake


def query(fake: FakePlausible, key: str = PLAUSIBLE_KEY, timeout: float = 5, **body: Any) -> httpx.Response:
    return HTTP.post(
        f"{fake.url}/api/v2/query",
        json={"site_id": fake.site_id, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def seed(fake: FakePlausible) -> None:
    fake.visit(at("2026-11-30T23:30:00+00:00"), "u1", "/", "/pricing", source="Google", duration=120)  # Dec 1 Berlin
    fake.visit(at("2026-12-01T08:00:00+00:00"), "u2", "/blog/x", duration=0)
    fake.visit(at("2026-12-01T09:00:00+00:00"), "u1", "/", source="Twitter", duration=30)
    fake.visit(at("2026-12-01T23:30:00+00:00"), "u3", "/pricing", source="Google")  # Dec 2 in Berlin


def test_plausible_aggregate_reads_plain_dates_in_the_site_time_zone(plausible: FakePlausible) -> None:
    seed(plausible)
    metrics = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "views_per_visit"]
    berlin = query(plausible, metrics=metrics, date_range=["2026-12-01", "2026-12-01"]).json()
    assert berlin["results"] == [{"metrics": [2, 3, 4, 67, 50, 1.33], "dimensions": []}]
    assert berlin["meta"] == {}
    assert berlin["query"] == {
        "site_id": "example.com",
        "metrics": metrics,
        "filters": [],
        "dimensions": [],
        "date_range": ["2026-12-01T00:00:00+01:00", "2026-12-01T23:59:59+01:00"],
        "order_by": [["visitors", "desc"]],
        "include": {},
    }
    phoenix = query(
        plausible,
        metrics=["visitors", "visits"],  # the day in America/Phoenix, sent as instants
        date_range=["2026-12-01T00:00:00-07:00", "2026-12-01T23:59:59-07:00"],
    ).json()
    assert phoenix["results"] == [{"metrics": [3, 3], "dimensions": []}]
    empty = query(plausible, metrics=["visitors", "bounce_rate"], date_range=["2027-01-01", "2027-01-01"]).json()
    assert empty["results"] == [{"metrics": [0, 0], "dimensions": []}]


def test_plausible_breakdowns_order_paginate_and_label_direct_traffic(plausible: FakePlausible) -> None:
    seed(plausible)
    pages = query(
        plausible,
        metrics=["visitors", "pageviews", "bounce_rate"],
        dimensions=["event:page"],
        date_range=["2026-11-30", "2026-12-02"],
        order_by=[["pageviews", "desc"]],
        pagination={"limit": 2, "offset": 0},
        include={"total_rows": True},
    ).json()
    assert pages["results"] == [
        {"metrics": [1, 2, 50], "dimensions": ["/"]},
        {"metrics": [2, 2, 100], "dimensions": ["/pricing"]},
    ]
    assert pages["meta"] == {"total_rows": 3} and pages["query"]["pagination"] == {"offset": 0, "limit": 2}
    sources = query(
        plausible,
        metrics=["visitors", "percentage"],
        dimensions=["visit:source"],
        date_range=["2026-11-30", "2026-12-02"],
    ).json()
    assert sources["results"] == [
        {"metrics": [2, 66.7], "dimensions": ["Google"]},
        {"metrics": [1, 33.3], "dimensions": ["Direct / None"]},
        {"metrics": [1, 33.3], "dimensions": ["Twitter"]},
    ]


def test_plausible_daily_series_buckets_days_in_the_site_time_zone(plausible: FakePlausible) -> None:
    seed(plausible)
    series = query(
        plausible,
        metrics=["visitors"],
        dimensions=["time:day"],
        date_range=["2026-11-29", "2026-12-02"],
        include={"time_labels": True},
    ).json()
    assert series["results"] == [
        {"metrics": [2], "dimensions": ["2026-12-01"]},
        {"metrics": [1], "dimensions": ["2026-12-02"]},
    ]
    assert series["meta"]["time_labels"] == ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
    assert series["query"]["order_by"] == [["time:day", "asc"], ["visitors", "desc"]]
    week = query(plausible, metrics=["visitors"], date_range="7d").json()  # today (Dec 2, Berlin) excluded
    assert week["query"]["date_range"] == ["2026-11-25T00:00:00+01:00", "2026-12-01T23:59:59+01:00"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"metrics": ["bounce_rate"], "dimensions": ["event:goal"]},
            "Session metric(s) `bounce_rate` cannot be queried along with event dimension(s) `event:goal`",
        ),
        (
            {"metrics": ["views_per_visit"], "dimensions": ["visit:source"]},
            "Metric `views_per_visit` cannot be queried with `dimensions`.",
        ),
        ({"metrics": ["percentage"]}, "Metric `percentage` requires non-empty `dimensions`."),
        (
            {"metrics": ["visitors"], "order_by": [["events", "desc"]]},
            "Invalid order_by entry '{:events, :desc}'. Entry is not a queried metric or dimension.",
        ),
        (
            {"metrics": ["visitors"], "include": {"time_labels": True}},
            "Invalid include.time_labels: requires a time dimension.",
        ),
        ({"metrics": ["visitorz"]}, '#/metrics/0: Invalid metric "visitorz"'),
        ({"metrics": ["visitors"], "date_range": "yesterday"}, "Invalid date_range 'yesterday'"),
        (
            {"metrics": ["visitors"], "date_range": ["2026-12-01T00:00:00", "2026-12-01T23:59:59"]},
            "Invalid date_range '['2026-12-01T00:00:00', '2026-12-01T23:59:59']'.",
        ),
        ({"metrics": ["visitors"], "interval": "date"}, "#/interval: Schema does not allow additional properties."),
    ],
)
def test_plausible_refuses_what_its_query_validation_refuses(
    plausible: FakePlausible, body: dict[str, Any], message: str
) -> None:
    answer = query(plausible, **{"date_range": "day", **body})
    assert (answer.status_code, answer.json()) == (400, {"error": message})


def test_plausible_authorization_plan_and_rate_limit_errors(plausible: FakePlausible) -> None:
    clock = plausible.clock = ManualClock()
    plausible.hourly_limit = 5  # every request with a valid key counts, whatever its answer
    url = f"{plausible.url}/api/v2/query"
    assert HTTP.post(url, json={}).json()["error"].startswith("Missing API key.")
    assert query(plausible, key="nope", metrics=["visitors"], date_range="day").status_code == 401
    unknown_site = HTTP.post(
        url,
        json={"site_id": "other.com", "metrics": ["visitors"], "date_range": "day"},
        headers={"Authorization": f"Bearer {PLAUSIBLE_KEY}"},
    )
    assert unknown_site.status_code == 401 and unknown_site.json()["error"].startswith("Invalid API key or site ID.")
    no_site = HTTP.post(url, json={"metrics": ["visitors"]}, headers={"Authorization": f"Bearer {PLAUSIBLE_KEY}"})
    assert (no_site.status_code, no_site.json()["error"]) == (
        400,
        "Missing site ID. Please provide the required site_id parameter with your request.",
    )
    plausible.has_stats_api = False
    assert query(plausible, metrics=["visitors"], date_range="day").status_code == 402
    plausible.has_stats_api, plausible.locked = True, True
    assert "locked" in query(plausible, metrics=["visitors"], date_range="day").json()["error"]
    plausible.locked = False
    assert query(plausible, metrics=["visitors"], date_range="day").status_code == 200  # the fifth
    limited = query(plausible, metrics=["visitors"], date_range="day")
    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    assert limited.json()["error"] == (
        "Too many API requests. Your API key is limited to 5 requests per hour. "
        "Please contact us to request more capacity."
    )
    clock.advance(3600)
    assert query(plausible, metrics=["visitors"], date_range="day").status_code == 200


def test_plausible_counts_each_clock_hour_afresh(plausible: FakePlausible) -> None:
    """lib/plausible/rate_limit.ex: the counter's bucket is div(now_ms, 3_600_000), so the allowance
    comes back at the top of the hour (UTC), not an hour after the first request."""
    clock = plausible.clock = ManualClock(datetime(2026, 12, 2, 16, 59, 58, tzinfo=UTC))
    plausible.hourly_limit = 1
    assert query(plausible, metrics=["visitors"], date_range="day").status_code == 200
    assert query(plausible, metrics=["visitors"], date_range="day").status_code == 429
    clock.advance(2)  # 17:00:00
    assert query(plausible, metrics=["visitors"], date_range="day").status_code == 200
    assert query(plausible, metrics=["visitors"], date_range="day").status_code == 429


def test_plausible_answers_unmodelled_queries_501_and_can_hold_an_answer(plausible: FakePlausible) -> None:
    answer = query(plausible, metrics=["visitors"], date_range="day", filters=[["is", "visit:source", ["Google"]]])
    assert answer.status_code == 501
    plausible.script.append("hold")
    with pytest.raises(httpx.ReadTimeout):
        query(plausible, timeout=0.3, metrics=["visitors"], date_range="day")


def test_the_fakes_import_nothing_from_the_application() -> None:
    """They are reused as-is by the integration's tests, whatever the application's layout."""
    for name in (
        "fake_http",
        "fake_buffer",
        "fake_buffer_graphql",
        "fake_buffer_model",
        "fake_buffer_oauth",
        "fake_plausible",
    ):
        tree = ast.parse((Path(__file__).parent / f"{name}.py").read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        assert not {m for m in imported if m.split(".")[0] in ("app", "agents", "integrations")}, name
