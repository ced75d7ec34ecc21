"""The `opsdesk` command line: everything the web does, from a terminal."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from app.agents_cli import agents_app
from app.approval_links import LinkSigner
from app.approval_queue import ApprovalQueue
from app.config_check import check
from app.database import Database
from app.database_setup import open_database
from app.errors import KNOWN_ERRORS, InvalidInput, describe
from app.executor import Executor
from app.local_secrets import with_local_secrets
from app.log_setup import configure_logging
from app.memory_cli import memory_app
from app.models import ActionRecord, ActionRequest, DecisionRequest, ReviewerName, Status, Tier
from app.schedule_cli import jobs_command, report_command
from app.settings import Settings
from app.untrusted import UnusableJson, strict_json, validation_errors

app = typer.Typer(
    help="opsdesk: AI agents draft, a risk policy sorts, a person approves.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
approvals_app = typer.Typer(help="List, show and decide approvals.", no_args_is_help=True)
actions_app = typer.Typer(help="Submit and settle actions.", no_args_is_help=True)
executor_app = typer.Typer(help="Run the executor.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(approvals_app, name="approvals")
app.add_typer(actions_app, name="actions")
app.add_typer(executor_app, name="executor")
models_app = typer.Typer(help="The Claude model and its spend.", no_args_is_help=True)
app.add_typer(models_app, name="models")
brevo_app = typer.Typer(help="Email through Brevo: the daily quota and campaign batches.", no_args_is_help=True)
app.add_typer(brevo_app, name="brevo")
app.add_typer(memory_app, name="memory")
app.add_typer(agents_app, name="agents")
app.command("jobs")(jobs_command)
app.command("report")(report_command)

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error is never broken mid-command: the terminal wraps it

_STATE_STYLE = {"ok": "green", "not configured": "dim", "incomplete": "yellow", "malformed": "red"}
_ROW_STYLE = {"missing": "yellow", "malformed": "red", "generated": "cyan", "set": "green", "warning": "yellow"}


def _settings() -> Settings:
    try:
        return with_local_secrets(Settings())
    except ValidationError as exc:
        errors.print("[red]The configuration is not valid[/red] (run `opsdesk config check` for the report):")
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            errors.print(f"  {where}: {error['msg']}")
        raise typer.Exit(2) from None


@contextmanager
def _database(*, init_schema: bool = False) -> Iterator[tuple[Settings, Database]]:
    settings = _settings()
    with open_database(settings, init_schema=init_schema) as db:
        yield settings, db


_REVIEWER: TypeAdapter[str] = TypeAdapter(ReviewerName)


def _actor(name: str | None) -> str:
    """Who acts, marked as coming from the terminal (as the API marks its callers `api:`): a
    person's name (app.models.ReviewerName: one line, not one opsdesk uses for itself)."""
    try:
        return f"cli:{_REVIEWER.validate_python(name or getpass.getuser())}"
    except ValidationError as exc:
        raise InvalidInput(f"--as: {validation_errors(exc)[0]['msg']}") from exc


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


@config_app.command("check")
def config_check() -> None:
    """Per integration: what is configured, missing or malformed. Never prints a secret."""
    report = check()
    for part in report.parts:
        table = Table(
            title=f"{part.name}: [{_STATE_STYLE[part.state]}]{part.state}[/]",
            title_justify="left",
            show_header=False,
            box=None,
            padding=(0, 2),
        )
        for row in part.rows:
            table.add_row(row.setting, f"[{_ROW_STYLE.get(row.state, 'white')}]{row.state}[/]", row.note)
        console.print(table)
        console.print()
    if not report.ok:
        errors.print("[red]configuration check failed[/red]")
        raise typer.Exit(1)
    console.print("[green]configuration ok[/green]")


@db_app.command("init")
def db_init() -> None:
    """Apply schema.sql (idempotent) to the configured database."""
    with _database(init_schema=True) as (settings, _):
        console.print(f"[green]schema applied[/green] ({settings.database_mode})")


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="Listen address (OPSDESK_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (OPSDESK_PORT)")] = None,
    api: Annotated[bool, typer.Option("--api/--no-api", help="Serve the HTTP API")] = True,
    scheduler: Annotated[bool, typer.Option("--scheduler/--no-scheduler", help="Run the schedule")] = True,
    executor: Annotated[bool, typer.Option("--executor/--no-executor", help="Run the executor")] = True,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Executor threads")] = 1,
) -> None:
    """Run the service: HTTP API + scheduler + executor in one process."""
    from app.service import Parts, run_service

    settings = _settings()
    configure_logging(settings.log_level)
    if not (api or scheduler or executor):
        raise typer.BadParameter("nothing to run: enable at least one of --api, --scheduler, --executor")
    run_service(
        settings,
        Parts(api=api, scheduler=scheduler, executor=executor, workers=workers),
        host=host or settings.opsdesk_host,
        port=port or settings.opsdesk_port,
    )


@approvals_app.command("list")
def approvals_list(
    status: Annotated[Status | None, typer.Option(help="Only this status")] = Status.PENDING,
    all_: Annotated[bool, typer.Option("--all", help="Every status")] = False,
    tier: Annotated[Tier | None, typer.Option(help="Only this risk tier")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List actions (pending ones by default, oldest first)."""
    with _database() as (settings, db):
        page = ApprovalQueue(db, settings).list(
            status=None if all_ else status, tier=tier, agent=agent, limit=limit, offset=offset
        )
    if as_json:
        _print_json(page.model_dump(mode="json"))
        return
    table = Table(title=f"{page.total} action(s)")
    for column in ("id", "status", "tier", "agent", "kind", "summary", "requested", "expires"):
        table.add_column(column)
    for item in page.items:
        table.add_row(
            str(item.id),
            item.status.value,
            item.risk_level.value,
            item.agent,
            item.kind,
            item.summary[:60],
            f"{item.requested_at:%Y-%m-%d %H:%M}",
            f"{item.expires_at:%Y-%m-%d %H:%M}" if item.expires_at else "",
        )
    console.print(table)


@approvals_app.command("show")
def approvals_show(action_id: UUID) -> None:
    """Show one action with its audit trail."""
    with _database() as (settings, db):
        _print_json(ApprovalQueue(db, settings).get(action_id))


def _edits(pairs: list[str]) -> dict[str, Any]:
    edits: dict[str, Any] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise typer.BadParameter(f"--edit takes FIELD=VALUE, got {pair!r}")
        edits[field] = value
    return edits


@approvals_app.command("approve")
def approvals_approve(
    action_id: UUID,
    as_: Annotated[
        str | None,
        typer.Option("--as", help="Your name for the audit, recorded as cli:<name> (default: your user name)"),
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the decision")] = None,
    edit: Annotated[list[str] | None, typer.Option(help="FIELD=VALUE; edit before approving")] = None,
    pin: Annotated[
        str | None,
        typer.Option(
            help="The approval PIN, for a CRITICAL action when APPROVAL_PIN is "
            "set (asked for on a terminal when needed)"
        ),
    ] = None,
) -> None:
    """Approve a pending action (with --edit: modify, then approve)."""
    edits = _edits(edit or [])
    decision = DecisionRequest(decision="modify" if edits else "approve", reason=note, modifications=edits or None)
    with _database() as (settings, db):
        queue = ApprovalQueue(db, settings)
        if (
            pin is None
            and sys.stdin.isatty()
            and queue.pin_required_after(ActionRecord.model_validate(queue.get(action_id)), decision)
        ):
            pin = typer.prompt("Approval PIN", hide_input=True)
        record = queue.decide_with_pin(action_id, decision, actor=_actor(as_), channel="cli", pin=pin, terminal=True)
    console.print(f"[green]{record.decision}[/green] {record.id} by {record.decided_by}")


@approvals_app.command("reject")
def approvals_reject(
    action_id: UUID,
    reason: Annotated[str, typer.Option(help="Why (required; the agents learn from it)")],
    as_: Annotated[str | None, typer.Option("--as", help="Your name for the audit")] = None,
) -> None:
    """Reject a pending action with a reason."""
    with _database() as (settings, db):
        record = ApprovalQueue(db, settings).decide(
            action_id, DecisionRequest(decision="reject", reason=reason), actor=_actor(as_), channel="cli"
        )
    console.print(f"[yellow]rejected[/yellow] {record.id} by {record.decided_by}")


@approvals_app.command("inbox-link")
def approvals_inbox_link(
    hours: Annotated[
        float | None, typer.Option(min=0.1, max=24 * 31, help="How long the link works (default INBOX_LINK_HOURS)")
    ] = None,
) -> None:
    """Print a signed link to the inbox page: every pending action, several decided at once."""
    with _database() as (settings, db):
        # the database's clock, which the page checks the link against
        expires_at = ApprovalQueue(db, settings).clock() + timedelta(hours=hours or settings.inbox_link_hours)
        url = LinkSigner(settings).inbox_url(expires_at)
    typer.echo(url)  # plain, unwrapped: people copy it and scripts read it
    errors.print(f"valid until {expires_at.astimezone(settings.time_zone):%Y-%m-%d %H:%M %Z}")


@actions_app.command("submit")
def actions_submit(
    file: Annotated[Path, typer.Argument(help="A JSON file with the action ('-' reads stdin)", allow_dash=True)],
) -> None:
    """Submit an action: the same policy, queue and audit as the agents' actions."""
    text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    try:
        strict_json(text)  # what JSON may hold but opsdesk cannot keep, named (app.untrusted)
    except UnusableJson as exc:
        raise InvalidInput(f"the action's {exc.problem.where} {exc.problem.what}") from exc
    except ValueError:
        pass  # not JSON at all: the schema check below says so
    try:
        request = ActionRequest.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidInput("the action does not fit the schema", details={"errors": validation_errors(exc)}) from exc
    with _database() as (settings, db):
        result = ApprovalQueue(db, settings).submit(request, actor=_actor(None))
    _print_json(result.model_dump(mode="json"))


@actions_app.command("settle")
def actions_settle(
    action_id: UUID,
    outcome: Annotated[str, typer.Option(help="succeeded, failed, or retry")],
    reason: Annotated[str, typer.Option(help="What you checked")],
    as_: Annotated[str | None, typer.Option("--as", help="Your name for the audit")] = None,
) -> None:
    """Settle an `unknown` action after checking the outside system by hand."""
    with _database() as (settings, db):
        record = ApprovalQueue(db, settings).settle(action_id, outcome, actor=_actor(as_), reason=reason)
    console.print(f"{record.id} is now {record.status.value}")


@actions_app.command("cancel")
def actions_cancel(
    action_id: UUID,
    reason: Annotated[str, typer.Option(help="Why")],
    as_: Annotated[str | None, typer.Option("--as", help="Your name for the audit")] = None,
) -> None:
    """Cancel a pending or approved action before it runs."""
    with _database() as (settings, db):
        record = ApprovalQueue(db, settings).cancel(action_id, actor=_actor(as_), reason=reason)
    console.print(f"{record.id} is now {record.status.value}")


@executor_app.command("drain")
def executor_drain() -> None:
    """Run every action that is due now, then exit."""
    with _database() as (settings, db):
        executor = Executor(db, settings)
        try:
            ran = executor.run_until_idle()
        finally:
            executor.close()
    console.print(f"ran {ran} action(s)")


@models_app.command("check")
def models_check() -> None:
    """Check ANTHROPIC_MODEL against the models list now; the choice is stored for every process."""
    from rich.markup import escape

    from app.llm_ledger import claude_client, llm_spend

    with _database() as (settings, db):
        claude = claude_client(settings, db)
        try:
            resolution = claude.resolve_model(refresh=True)
        finally:
            claude.close()
        spend = llm_spend(db, settings)
    style = "yellow" if resolution.fallback else "green"
    console.print(f"configured: {escape(resolution.configured)}")
    console.print(f"resolved:   [{style}]{escape(resolution.resolved)}[/]  ({escape(resolution.reason)})")
    console.print(
        f"LLM spend {spend.day}: ${spend.spent_usd:.2f} of ${settings.llm_daily_budget_usd} "
        f"({spend.calls} calls, {spend.refused} refused)"
    )
    if resolution.checked_at is None:
        errors.print("[red]the models list could not be read[/red]")
        raise typer.Exit(1)


@brevo_app.command("send-due")
def brevo_send_due() -> None:
    """Send the campaign batches due today (what the scheduler does hourly), then show the quota."""
    from app.clients import Clients
    from app.email_campaigns import CampaignSender

    with _database() as (settings, db):
        clients = Clients(settings, db)
        try:
            sender = CampaignSender(db, settings, clients, worker_id=f"cli:{getpass.getuser()}")
            outcomes = sender.send_due()
            outlook = sender.quota.outlook()
        finally:
            clients.close()
    _print_json({"batches": outcomes, "quota": outlook})


@brevo_app.command("settle-batch")
def brevo_settle_batch(
    campaign_id: UUID,
    batch_no: int,
    outcome: Annotated[str, typer.Option(help="sent, or not_sent (then it is sent again)")],
    reason: Annotated[str, typer.Option(help="What you checked in Brevo's logs")],
    as_: Annotated[str | None, typer.Option("--as", help="Your name for the audit")] = None,
) -> None:
    """Settle an `unknown` campaign batch after checking Brevo's logs."""
    from app.clients import Clients
    from app.email_campaigns import CampaignSender

    if outcome not in ("sent", "not_sent"):
        raise typer.BadParameter("--outcome is sent or not_sent")
    with _database() as (settings, db):
        sender = CampaignSender(db, settings, Clients(settings, db), worker_id=_actor(as_))
        _print_json(
            sender.settle(
                campaign_id, batch_no, "sent" if outcome == "sent" else "not_sent", actor=_actor(as_), reason=reason
            )
        )


def main(argv: list[str] | None = None) -> None:
    try:
        # without standalone mode click returns an Exit's code instead of exiting
        code = app(args=argv, standalone_mode=False)
    except KNOWN_ERRORS as exc:
        info = describe(exc)
        errors.print(f"[red]{info.code}[/red]: {info.message}")
        for key, value in info.details.items():
            errors.print(f"  {key}: {value}")
        sys.exit(info.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
