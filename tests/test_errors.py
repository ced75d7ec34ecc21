"""One status, code and exit code per error (`app.core.errors.describe`), for the app's tree and the
integrations' alike, and the API and the CLI both answering with them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import agents
import app
import integrations
from app.core.database import Database
from app.core.errors import (
    KNOWN_ERRORS,
    BudgetExceeded,
    ConfigError,
    InvalidInput,
    NotFound,
    OpsdeskError,
    SchemaOutdated,
    describe,
)
from app.core.settings import Settings
from app.email.quota import QuotaExhausted
from app.web import create_app
from integrations.brevo import BrevoRefused, CreditsExhausted, OutcomeUncertain
from integrations.buffer import BufferRefused, PostMaybeMade
from integrations.buffer_oauth import ReconnectNeeded
from integrations.errors import (
    AuthRevoked,
    CircuitOpen,
    IntegrationError,
    InvalidRequest,
    ModelOutputInvalid,
    NotConfigured,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)
from integrations.plausible import AuthRefused, PlanRefused
from tests.cli_support import clean_env, run
from tests.live_server import serve

# every integration error there is, one instance each, and (HTTP status, code, exit code)
INTEGRATION_CASES: list[tuple[IntegrationError, tuple[int, str, int]]] = [
    (IntegrationError("failed", system="s"), (502, "integration_error", 9)),
    (InvalidRequest("too long", system="discord"), (422, "invalid_input", 4)),
    (TransientError("HTTP 503", system="s"), (502, "integration_error", 9)),
    (RateLimited("429", system="s", retry_after=3), (502, "rate_limited", 9)),
    (CircuitOpen("open", system="s"), (503, "circuit_open", 9)),
    (OutcomeUncertain("no answer", system="brevo"), (502, "brevo_outcome_uncertain", 9)),
    (QuotaExhausted("spent", system="brevo"), (502, "email_quota_exhausted", 9)),
    (PermanentError("HTTP 400", system="s"), (502, "integration_error", 9)),
    (NotConfigured("NOTION_API_KEY is not set", system="notion"), (500, "config_error", 2)),
    (BrevoRefused("HTTP 400", status=400, brevo_code="invalid_parameter"), (502, "brevo_refused", 9)),
    (CreditsExhausted("HTTP 402", status=402, brevo_code="not_enough_credits"), (502, "brevo_credits_exhausted", 9)),
    (OutcomeUnknown("maybe", system="discord"), (502, "outcome_unknown", 9)),
    (ModelOutputInvalid("no fit", system="anthropic"), (502, "model_output_invalid", 9)),
    (AuthRevoked("401", system="s"), (502, "auth_revoked", 5)),
    (ReconnectNeeded("invalid_grant", system="buffer"), (502, "buffer_reconnect_needed", 5)),
    (BufferRefused("InvalidInputError: Text is required", system="buffer"), (502, "buffer_refused", 9)),
    (PostMaybeMade("no answer", system="buffer", retry_after=60), (502, "buffer_post_uncertain", 9)),
    (AuthRefused("HTTP 401", system="plausible"), (502, "plausible_auth_refused", 9)),
    (PlanRefused("HTTP 402", system="plausible"), (502, "plausible_plan_refused", 9)),
]


def every_module() -> Iterator[str]:
    for package in (app, agents, integrations):
        yield package.__name__
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            yield module.name


def subclasses(root: type[Exception]) -> set[type[Exception]]:
    for name in every_module():  # a subclass exists only once its module is imported
        importlib.import_module(name)
    found: set[type[Exception]] = set()
    pending = [root]
    while pending:
        kind = pending.pop()
        if kind not in found:
            found.add(kind)
            pending.extend(kind.__subclasses__())
    return found


def test_every_integration_error_has_one_status_code_and_exit_code() -> None:
    assert {type(exc) for exc, _ in INTEGRATION_CASES} == subclasses(IntegrationError), "add the new error here"
    for exc, expected in INTEGRATION_CASES:
        info = describe(exc)
        assert (info.status_code, info.code, info.exit_code) == expected, type(exc).__name__
        assert info.message == exc.message and info.message.startswith(f"{exc.system}: ")


def test_the_app_errors_keep_their_own_status_and_exit_code() -> None:
    for kind in subclasses(OpsdeskError):
        exc = kind.__new__(kind)
        OpsdeskError.__init__(exc, "x")  # the base's fields: some subclasses take more arguments
        info = describe(exc)
        assert (info.status_code, info.code, info.exit_code) == (kind.status_code, kind.code, kind.exit_code)
    assert describe(SchemaOutdated("old")).exit_code == 12
    assert describe(BudgetExceeded("cap", retry_after=60)).status_code == 429


def test_integration_errors_are_not_app_errors_but_both_are_known() -> None:
    """The two trees are apart (integrations import nothing from app); callers that tell an
    expected failure from a bug name both."""
    assert not issubclass(IntegrationError, OpsdeskError)
    assert isinstance(RateLimited("429", system="s"), KNOWN_ERRORS)
    assert isinstance(NotFound("no"), KNOWN_ERRORS)
    assert not isinstance(ValueError("bug"), KNOWN_ERRORS)


def test_messages_and_details_are_made_storable() -> None:
    exc = PermanentError("bad\x00 text \ud800", system="s", details={"k\x00": ["v\x00"]})
    assert exc.message == "s: bad text \ufffd" and exc.details == {"k": ["v"]}


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotConfigured("HUBSPOT_PRIVATE_APP_TOKEN is not configured", system="hubspot"), 500, "config_error"),
        (InvalidRequest("not a Discord message id", system="discord"), 422, "invalid_input"),
        (RateLimited("429 Too Many Requests", system="brevo", retry_after=5), 502, "rate_limited"),
        (CircuitOpen("circuit open", system="anthropic"), 503, "circuit_open"),
        (ConfigError("DISCORD_WEBHOOK_URL is not configured"), 500, "config_error"),
        (InvalidInput("bad"), 422, "invalid_input"),
    ],
)
def test_the_api_answers_any_known_error_with_its_status_and_code(
    settings: Settings, db: Database, error: Exception, status: int, code: str
) -> None:
    api = create_app(settings, db)

    @api.get("/raises")
    def raises() -> None:
        raise error

    with serve(api) as url:
        answer = httpx.get(f"{url}/raises", headers={"X-Request-Id": "err-1"}, timeout=30)
    assert answer.status_code == status
    assert answer.json()["error"] == {"code": code, "message": str(error), "request_id": "err-1"}


@pytest.mark.parametrize(
    ("error", "exit_code", "shown"),
    [
        (NotConfigured("ANTHROPIC_API_KEY is not set", system="anthropic"), 2, "config_error: anthropic: ANTHROPIC"),
        (RateLimited("429", system="hubspot", details={"policy": "TEN_SECONDLY_ROLLING"}), 9, "rate_limited: hubspot"),
        (InvalidRequest("too long", system="discord"), 4, "invalid_input: discord: too long"),
        (NotFound("no such action"), 6, "not_found: no such action"),
    ],
)
def test_the_cli_exits_with_the_errors_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    exit_code: int,
    shown: str,
) -> None:
    clean_env(monkeypatch, tmp_path)

    def check() -> None:
        raise error

    monkeypatch.setattr("app.cli.config.check", check)
    assert run("config", "check") == exit_code
    err = capsys.readouterr().err
    assert shown in " ".join(err.split())
    if isinstance(error, RateLimited):
        assert "policy: TEN_SECONDLY_ROLLING" in err
