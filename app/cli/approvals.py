"""`opsdesk approvals ...`, `opsdesk actions ...` and `opsdesk executor drain`: everything the
review pages and the API do, from a terminal."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.table import Table

from app.approvals.executor import Executor
from app.approvals.links import LinkSigner
from app.approvals.queue import ApprovalQueue
from app.cli.context import actor, console, database, errors, print_json
from app.core.errors import InvalidInput
from app.core.models import ActionRecord, ActionRequest, DecisionRequest, Status, Tier
from integrations.untrusted import UnusableJson, strict_json, validation_errors

approvals_app = typer.Typer(help="List, show and decide approvals.", no_args_is_help=True)
actions_app = typer.Typer(help="Submit and settle actions.", no_args_is_help=True)
executor_app = typer.Typer(help="Run the executor.", no_args_is_help=True)


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
    with database() as (settings, db):
        page = ApprovalQueue(db, settings).list(
            status=None if all_ else status, tier=tier, agent=agent, limit=limit, offset=offset
        )
    if as_json:
        print_json(page.model_dump(mode="json"))
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
    with database() as (settings, db):
        print_json(ApprovalQueue(db, settings).get(action_id))


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
    with database() as (settings, db):
        queue = ApprovalQueue(db, settings)
        if (
            pin is None
            and sys.stdin.isatty()
            and queue.pin_required_after(ActionRecord.model_validate(queue.get(action_id)), decision)
        ):
            pin = typer.prompt("Approval PIN", hide_input=True)
        record = queue.decide_with_pin(action_id, decision, actor=actor(as_), channel="cli", pin=pin, terminal=True)
    console.print(f"[green]{record.decision}[/green] {record.id} by {record.decided_by}")


@approvals_app.command("reject")
def approvals_reject(
    action_id: UUID,
    reason: Annotated[str, typer.Option(help="Why (required; the agents learn from it)")],
    as_: Annotated[str | None, typer.Option("--as", help="Your name for the audit")] = None,
) -> None:
    """Reject a pending action with a reason."""
    with database() as (settings, db):
        record = ApprovalQueue(db, settings).decide(
            action_id, DecisionRequest(decision="reject", reason=reason), actor=actor(as_), channel="cli"
        )
    console.print(f"[yellow]rejected[/yellow] {record.id} by {record.decided_by}")


@approvals_app.command("inbox-link")
def approvals_inbox_link(
    hours: Annotated[
        float | None, typer.Option(min=0.1, max=24 * 31, help="How long the link works (default INBOX_LINK_HOURS)")
    ] = None,
) -> None:
    """Print a signed link to the inbox page: every pending action, several decided at once."""
    with database() as (settings, db):
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
        strict_json(text)  # what JSON may hold but opsdesk cannot keep, named (integrations.untrusted)
    except UnusableJson as exc:
        raise InvalidInput(f"the action's {exc.problem.where} {exc.problem.what}") from exc
    except ValueError:
        pass  # not JSON at all: the schema check below says so
    try:
        request = ActionRequest.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidInput("the action does not fit the schema", details={"errors": validation_errors(exc)}) from exc
    with database() as (settings, db):
        result = ApprovalQueue(db, settings).submit(request, actor=actor(None))
    print_json(result.model_dump(mode="json"))


@actions_app.command("settle")
def actions_settle(
    action_id: UUID,
    outcome: Annotated[str, typer.Option(help="succeeded, failed, or retry")],
    reason: Annotated[str, typer.Option(help="What you checked")],
    as_: Annotated[str | None, typer.Option("--as", help="Your name for the audit")] = None,
) -> None:
    """Settle an `unknown` action after checking the outside system by hand."""
    with database() as (settings, db):
        record = ApprovalQueue(db, settings).settle(action_id, outcome, actor=actor(as_), reason=reason)
    console.print(f"{record.id} is now {record.status.value}")


@actions_app.command("cancel")
def actions_cancel(
    action_id: UUID,
    reason: Annotated[str, typer.Option(help="Why")],
    as_: Annotated[str | None, typer.Option("--as", help="Your name for the audit")] = None,
) -> None:
    """Cancel a pending or approved action before it runs."""
    with database() as (settings, db):
        record = ApprovalQueue(db, settings).cancel(action_id, actor=actor(as_), reason=reason)
    console.print(f"{record.id} is now {record.status.value}")


@executor_app.command("drain")
def executor_drain() -> None:
    """Run every action that is due now, then exit."""
    with database() as (settings, db):
        executor = Executor(db, settings)
        try:
            ran = executor.run_until_idle()
        finally:
            executor.close()
    console.print(f"ran {ran} action(s)")
