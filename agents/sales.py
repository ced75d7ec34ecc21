"""The sales agent: follow-ups for deals that went quiet, first emails to new contacts.

Sources, from HubSpot: open deals with no activity for SALES_STALE_DAYS (version: today, so at most
one draft per deal a day and none while one waits) with the deal's contact, and contacts created
in the last SALES_NEW_CONTACT_DAYS that are not such a deal's contact (version `new`: one first
email ever). A deal or contact the model leaves out is skipped for the day (agents.framework), so
the ones it keeps passing over go behind new contacts instead of filling every prompt, and come
back the next day.

A proposal becomes: the email (email.send to the contact's address as HubSpot has it; the plan has
no field for an address, so one the model writes goes nowhere), a hubspot.task for the deal's
owner when the model says a call is better, and optionally a stage change (hubspot.deal_stage: the
kind's own hook makes a move backwards or to closed-lost irreversible, so at least HIGH). The email
waits for a person at AGENT_EMAIL_MIN_TIER or above (MEDIUM at least when it holds an address or
link not in the business's own settings: CRM text is never trusted for one), and carries the deal
or contact to log it on: the note is written only once the email was sent (app.kinds.email), so a
rejected email leaves no trace in the CRM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.drafting import clip, email_html, one_line, unsourced_flags
from agents.framework import Agent, AgentEnv, Briefing, Plan, Proposal, Refused, Source
from agents.prompt import DataBlock
from app.core.models import ActionRequest, Impact, Tier
from app.core.settings import Settings
from app.kinds.hubspot import DEFAULT_DEAL_STAGES
from integrations.hubspot_models import Contact, Deal

SEARCH_LIMIT = 200  # per HubSpot search; the run keeps AGENT_MAX_SOURCES of what is not handled yet
# DEFAULT_DEAL_STAGES spelled out for the schema (a test keeps the two equal): the stages whose
# order hubspot.deal_stage knows, so it can tell a regression
DealStage = Literal[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
]


@dataclass(frozen=True)
class SalesTarget:
    deal: Deal | None  # None: a new contact
    contact: Contact | None

    @property
    def who(self) -> str:
        return (self.contact.name if self.contact else None) or "the contact"

    @property
    def about(self) -> str:
        return (self.deal.name or f"deal {self.deal.id}") if self.deal else "a first hello"


class FollowUpEmail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subject: str = Field(description="One line")
    body: str = Field(description="Plain text; paragraphs separated by blank lines; no email addresses")


class CallTask(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subject: str = Field(description="What the call is for, one line")
    notes: str = Field("", description="What the owner should know or ask")
    due_in_days: int = Field(1, description="0 to 30")


class SalesProposal(Proposal):
    email: FollowUpEmail | None = Field(None, description="The follow-up email, if one should be sent")
    call: CallTask | None = Field(None, description="Set when a phone call by the owner would serve better")
    new_stage: DealStage | None = Field(None, description="Only when the data shows the deal really moved")


class SalesPlan(Plan[SalesProposal]):
    """What the sales agent's model answers."""


class SalesAgent(Agent[SalesTarget, SalesProposal, Briefing]):
    name = "sales"
    cron_setting = "sales_agent_cron"
    plan_model = SalesPlan
    kinds: ClassVar[Mapping[str, str]] = {
        "email.send": "your `email`, sent through Brevo to the contact's address in HubSpot (once sent, it is "
        "logged as a note on the deal or contact)",
        "hubspot.task": "your `call`, a task for the deal's owner",
        "hubspot.deal_stage": "your `new_stage` (backwards or to closedlost needs at least HIGH approval)",
    }
    rules = """You follow up on sales. A deal that went quiet gets a short, specific follow-up that moves it
one step forward; a new contact gets a friendly first hello that offers help without pressure.
- Prefer `email`. Add `call` when a conversation would serve better (a large or late-stage deal, a
  question email cannot settle), or instead of the email when the contact has no email on file.
- Use only facts in the data: never invent prices, discounts, deadlines, meetings or promises.
- Greet the contact by first name when the data has it; sign off as the team.
- `new_stage` only when the data shows the deal has really moved; moving a deal backwards or to
  closedlost is a serious step a person must confirm.
- Leave a source out when a follow-up would not help."""

    example = """Data block deal-1001 (HubSpot deal):
deal name: Mesa Dental renewal
stage: contractsent (pipeline default)
amount: 4800
last activity: 2026-10-02 (21 days ago)
contact name: Rosa Diaz
contact email on file: yes
A good answer:
{"proposals": [{"ref": "deal-1001", "email": {"subject": "Your renewal contract",
"body": "Hi Rosa,\n\nWe sent the renewal contract for Mesa Dental three weeks ago and wanted to make
sure it reached the right person. If anything in it should change, reply here and we will sort it
out.\n\nThe team"}, "call": null, "new_stage": null, "rationale": "Contract out for three weeks
without a reply; a light check-in.", "confidence": 0.7, "suggested_tier": null}]}"""

    def find_sources(self, env: AgentEnv) -> list[Source[SalesTarget]]:
        hubspot = env.clients.get(Settings.hubspot_client)
        settings = env.settings
        deals = hubspot.stale_deals(inactive_days=settings.sales_stale_days, now=env.now, limit=SEARCH_LIMIT)
        contact_of = hubspot.deal_contacts([deal.id for deal in deals]) if deals else {}
        since = env.now - timedelta(days=settings.sales_new_contact_days)
        newcomers = hubspot.contacts_created_since(since, limit=SEARCH_LIMIT)
        with_deal = {contact.id for contact in contact_of.values()}
        day = env.today.isoformat()
        return [Source(f"deal-{deal.id}", day, SalesTarget(deal, contact_of.get(deal.id))) for deal in deals] + [
            Source(f"contact-{contact.id}", "new", SalesTarget(None, contact))
            for contact in newcomers
            if contact.id not in with_deal
        ]

    def brief(self, env: AgentEnv, sources: Sequence[Source[SalesTarget]]) -> Briefing:
        blocks = [
            DataBlock(
                f"{source.ref} (HubSpot {'deal' if source.record.deal else 'new contact'})",
                _describe(env, source.record),
            )
            for source in sources
        ]
        task = (
            "For each deal and contact above, propose a follow-up (`email` and/or `call`), or leave it out. "
            "Name each by its ref."
        )
        return Briefing(blocks, task)

    def build(
        self, env: AgentEnv, source: Source[SalesTarget], proposal: SalesProposal, briefing: Briefing
    ) -> list[ActionRequest]:
        target = source.record
        deal, contact = target.deal, target.contact
        if proposal.email is None and proposal.call is None:
            raise Refused("it proposes neither an email nor a call")
        if deal is not None:
            on = {"object_type": "deal", "object_id": deal.id}
        elif contact is not None:
            on = {"object_type": "contact", "object_id": contact.id}
        else:
            raise Refused("no deal or contact to act on")
        requests: list[ActionRequest] = []
        if proposal.email is not None:
            if contact is None or not contact.email:
                raise Refused("HubSpot has no email address for its contact; a call is the way")
            subject, body = one_line(proposal.email.subject, 200), proposal.email.body.strip()
            if not subject or not body:
                raise Refused("the email has no subject or no body")
            requests.append(
                self.request(
                    source,
                    "email",
                    kind="email.send",
                    summary=f"Follow-up email to {target.who} ({target.about})",
                    reasoning=proposal.rationale,
                    proposal=proposal,
                    floor=Tier(env.settings.agent_email_min_tier),
                    # a deal's and a contact's text come from CRM users and web forms: never trusted for links
                    flags=unsourced_flags(env.settings, f"{subject}\n{body}", ()),
                    payload={
                        "to": {"email": contact.email, "name": contact.name},
                        "subject": subject,
                        "html": email_html(body),
                        "text": body,
                        "crm_note": on,
                    },
                    impact=Impact(recipients=1),
                )
            )
        if proposal.call is not None:
            call = proposal.call
            subject = one_line(call.subject, 200) or f"Call {target.who}"
            owner = deal.owner_id if deal is not None and (deal.owner_id or "").isdigit() else None
            requests.append(
                self.request(
                    source,
                    "call",
                    kind="hubspot.task",
                    summary=f"Call {target.who} ({target.about})",
                    reasoning=proposal.rationale,
                    proposal=proposal,
                    payload={
                        **on,
                        "subject": subject,
                        "body": clip(call.notes.strip(), 20_000),
                        "due": (env.now + timedelta(days=min(max(call.due_in_days, 0), 30))).isoformat(),
                        "priority": "MEDIUM",
                        "owner_id": owner,
                    },
                )
            )
        if proposal.new_stage is not None:
            requests.extend(self._stage_change(source, deal, proposal))
        return requests

    def _stage_change(
        self, source: Source[SalesTarget], deal: Deal | None, proposal: SalesProposal
    ) -> list[ActionRequest]:
        if deal is None:
            raise Refused("a stage change needs a deal, and this is a contact")
        if deal.pipeline not in (None, "default") or deal.stage not in DEFAULT_DEAL_STAGES:
            raise Refused(f"the deal is in pipeline {deal.pipeline!r} at stage {deal.stage!r}, whose order is unknown")
        if deal.stage == proposal.new_stage:
            return []
        return [
            self.request(
                source,
                "stage",
                kind="hubspot.deal_stage",
                summary=f"Move deal {deal.name or deal.id} from {deal.stage} to {proposal.new_stage}",
                reasoning=proposal.rationale,
                proposal=proposal,
                payload={"deal_id": deal.id, "from_stage": deal.stage, "to_stage": proposal.new_stage},
            )
        ]


def _describe(env: AgentEnv, target: SalesTarget) -> str:
    lines = []
    if target.deal is not None:
        deal = target.deal
        last = deal.last_activity_at
        quiet = f"{last.date().isoformat()} ({(env.now - last).days} days ago)" if last else "none logged"
        lines += [
            f"deal name: {deal.name or '(none)'}",
            f"stage: {deal.stage} (pipeline {deal.pipeline})",
            f"amount: {deal.amount if deal.amount is not None else 'unknown'}",
            f"last activity: {quiet}",
            f"expected close: {deal.close_date.date().isoformat() if deal.close_date else 'unknown'}",
            f"created: {deal.created_at.date().isoformat()}",
        ]
    contact = target.contact
    if contact is None:
        lines.append("contact: none linked (no email possible; propose a call or leave it out)")
    else:
        lines += [
            f"contact name: {contact.name or '(unknown)'}",
            f"contact email on file: {'yes' if contact.email else 'no (propose a call, not an email)'}",
            f"contact created: {contact.created_at.date().isoformat()}",
        ]
    return "\n".join(lines)
