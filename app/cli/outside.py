"""`opsdesk models check` and `opsdesk brevo ...`: the outside systems' state as opsdesk keeps it
(the Claude model choice and its spend; Brevo's quota and campaign batches)."""

from __future__ import annotations

import getpass
from typing import Annotated
from uuid import UUID

import typer

from app.cli.context import actor, console, database, errors, print_json

models_app = typer.Typer(help="The Claude model and its spend.", no_args_is_help=True)
brevo_app = typer.Typer(help="Email through Brevo: the daily quota and campaign batches.", no_args_is_help=True)


@models_app.command("check")
def models_check() -> None:
    """Check ANTHROPIC_MODEL against the models list now; the choice is stored for every process."""
    from rich.markup import escape

    from app.clients.claude_ledger import claude_client, llm_spend

    with database() as (settings, db):
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
    from app.email.campaigns import CampaignSender

    with database() as (settings, db):
        clients = Clients(settings, db)
        try:
            sender = CampaignSender(db, settings, clients, worker_id=f"cli:{getpass.getuser()}")
            outcomes = sender.send_due()
            outlook = sender.quota.outlook()
        finally:
            clients.close()
    print_json({"batches": outcomes, "quota": outlook})


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
    from app.email.campaigns import CampaignSender

    if outcome not in ("sent", "not_sent"):
        raise typer.BadParameter("--outcome is sent or not_sent")
    with database() as (settings, db):
        sender = CampaignSender(db, settings, Clients(settings, db), worker_id=actor(as_))
        print_json(
            sender.settle(
                campaign_id, batch_no, "sent" if outcome == "sent" else "not_sent", actor=actor(as_), reason=reason
            )
        )
