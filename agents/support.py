"""The support agent: replies to open, unanswered HubSpot tickets, grounded in memory.

Sources: open tickets no agent has answered in HubSpot yet (`first_agent_reply_date` unset) whose
requester, the contact associated with the ticket, has an email address. Version: the customer's
last message (`last_reply_date`, else the ticket's creation), so a reply drafted for it (approved,
rejected or expired) is not drafted again until the customer writes again.

Context: each ticket is remembered (memory kind `ticket`, which marketing draws topics from; not
in a dry run, which writes nothing but its run record), then memory is searched for knowledge-base
articles and past replies with the ticket's words. The model sees them fenced, each with a ref
`mem-<id>`.

A proposal becomes:
- `reply`: email.send to the ticket's requester, never anyone else. Every article it cites must
  be one memory returned for this ticket; the knowledge-base articles it cites are listed at the
  end of the reply. An address or link in the model's reply that no knowledge-base article found
  for it gives (the ticket itself is the customer's text: never trusted for that) makes it at
  least MEDIUM, with the reason shown to the reviewer.
- `refund`: there is no payment integration, so a refund or credit is a hubspot.task for a person
  on the requester's contact, with `impact.cost_usd` set to the validated amount: the policy tiers
  it by the money (over $100 is CRITICAL), and the person pays only once it is approved.
- `needs_human`: a hubspot.task asking a person to answer (LOW: a task changes nothing outside,
  and it should reach someone at once).
A proposal that fails a check, and a ticket the plan leaves out, get that same task, with the
reason written by code, instead of an invented answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal, InvalidOperation
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.drafting import business_written, clip, email_html, one_line, search_words, unsourced_flags
from agents.framework import Agent, AgentEnv, Briefing, Plan, Proposal, Refused, Source
from agents.prompt import DataBlock
from app.core.errors import DatabaseError, InvalidInput
from app.core.models import ActionRequest, Impact, Tier
from app.core.settings import Settings
from app.memory.models import MAX_CONTENT_CHARS, SearchHit, TicketMemory
from integrations.hubspot_models import Ticket

log = logging.getLogger(__name__)

# Replies go out through Brevo, so HubSpot still shows answered tickets as unanswered until a person
# closes them: read well past AGENT_MAX_SOURCES, or those would hide the new ones (oldest first).
SEARCH_LIMIT = 500
MEMORY_KINDS = ("kb_article", "email_sent")
TICKET_CHARS = 6000
ARTICLE_CHARS = 3000
MAX_MONEY = Decimal("100000")  # far above any refund a small business makes: a bigger one is nonsense


class Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subject: str = Field(description="One line; empty for 'Re: <ticket subject>'")
    body: str = Field(description="Plain text; paragraphs separated by blank lines; no email addresses")
    cited: list[str] = Field(default_factory=list, description="Refs (mem-N) of the memory items the reply relies on")


class MoneyBack(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["refund", "credit"]
    amount_usd: str = Field(description='The amount in US dollars, e.g. "25.00"')
    reason: str = Field(description="Why, with the policy it follows")


class SupportProposal(Proposal):
    reply: Reply | None = Field(None, description="The reply to the ticket's requester")
    refund: MoneyBack | None = Field(None, description="A refund or credit for a person to decide and pay")
    needs_human: str | None = Field(None, description="What a person must answer, when memory does not")


class SupportPlan(Plan[SupportProposal]):
    """What the support agent's model answers."""


@dataclass
class SupportBriefing(Briefing):
    found: dict[str, dict[str, SearchHit]]  # ticket ref -> memory ref -> what memory returned


class SupportAgent(Agent[Ticket, SupportProposal, SupportBriefing]):
    name = "support"
    cron_setting = "support_agent_cron"
    plan_model = SupportPlan
    kinds: ClassVar[Mapping[str, str]] = {
        "email.send": "your `reply`, sent through Brevo to the ticket's requester only",
        "hubspot.task": "your `refund` (a task for a person, tiered by its amount) or `needs_human`",
    }
    rules = """You answer customer support tickets.
- Answer only from the ticket and the memory items found for it (knowledge-base articles, our past
  replies). List in `cited` the ref of every item you relied on. Never invent a policy, price, date
  or promise.
- When those items do not answer the question, do not guess: set `needs_human` to what a person
  must answer. You may still send a short reply saying a person will follow up, citing nothing.
- A refund or credit is only a proposal to a person: set `refund` (type, amount in US dollars,
  reason) when the articles' policy supports it, and never tell the customer it is approved.
- Every ticket gets a proposal: a reply, `needs_human`, or both."""

    example = """Data blocks ticket-2001 (HubSpot ticket) and mem-17 (knowledge-base article):
subject: Late order / message: Ordered on the 3rd and nothing yet. Can I get my money back?
mem-17: title: Shipping times / Orders ship within 3 business days; delivery takes 5 to 7 days.
A good answer:
{"proposals": [{"ref": "ticket-2001", "reply": {"subject": "", "body": "Hi,\n\nSorry for the
wait. Orders ship within 3 business days and then take 5 to 7 days to arrive, so yours may still be
on its way. A colleague is checking its status now and will write to you today.\n\nThe team",
"cited": ["mem-17"]}, "refund": null, "needs_human": "Check where the order from the 3rd is; the
customer asks about a refund, which no article covers.", "rationale": "Shipping times answer
part of it; the refund question needs a person.", "confidence": 0.8, "suggested_tier": null}]}"""

    def find_sources(self, env: AgentEnv) -> list[Source[Ticket]]:
        sources = []
        for ticket in env.clients.get(Settings.hubspot_client).open_tickets(limit=SEARCH_LIMIT, unanswered_only=True):
            if not ticket.requester_email or not ticket.requester_contact_id:
                log.info("support: ticket %s has no requester contact with an email; left for a person", ticket.id)
                continue
            asked = ticket.last_customer_reply_at or ticket.created_at
            sources.append(Source(f"ticket-{ticket.id}", f"{asked.astimezone(UTC):%Y%m%dT%H%M%SZ}", ticket))
        return sources

    def brief(self, env: AgentEnv, sources: Sequence[Source[Ticket]]) -> SupportBriefing:
        found: dict[str, dict[str, SearchHit]] = {}
        items: dict[str, SearchHit] = {}
        blocks = []
        for source in sources:
            ticket = source.record
            words = f"{ticket.subject or ''}\n{ticket.content or ''}".strip()
            if not env.dry_run:
                self._remember(env, ticket, words)
            query = search_words(words)
            hits = (
                env.memory.search(
                    query, kinds=MEMORY_KINDS, limit=env.settings.support_memory_results, include_content=True
                ).results
                if query
                else []
            )
            found[source.ref] = {f"mem-{hit.id}": hit for hit in hits}
            items.update(found[source.ref])
            blocks.append(
                DataBlock(
                    f"{source.ref} (HubSpot ticket #{ticket.id})",
                    "\n".join(
                        [
                            f"subject: {ticket.subject or '(none)'}",
                            f"priority: {ticket.priority or 'unknown'}",
                            f"opened: {ticket.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
                            f"memory found for it: {', '.join(found[source.ref]) or 'nothing'}",
                            "message:",
                            clip(ticket.content or "(empty)", TICKET_CHARS),
                        ]
                    ),
                )
            )
        for ref, hit in items.items():
            what = "knowledge-base article" if hit.kind == "kb_article" else "our past reply"
            blocks.append(
                DataBlock(
                    f"{ref} ({what})",
                    f"title: {hit.title or '(none)'}\n{clip(hit.content or hit.snippet, ARTICLE_CHARS)}",
                )
            )
        task = (
            "For each ticket above, propose a reply grounded in the memory found for it, `needs_human`, "
            "or both; add `refund` only where the policy in those articles supports it."
        )
        return SupportBriefing(blocks, task, found)

    @staticmethod
    def _remember(env: AgentEnv, ticket: Ticket, words: str) -> None:
        """Memory keeps the ticket for marketing's topics; one it cannot keep (text the full-text
        index refuses, say) is still answered: it costs this ticket its memory row, not the run."""
        try:
            env.memory.remember_ticket(
                TicketMemory(
                    id=ticket.id,
                    subject=clip(ticket.subject or "", 1000),
                    body=clip(words, MAX_CONTENT_CHARS) or "(empty ticket)",
                    requester=ticket.requester_email,
                    status=ticket.stage,
                    created_at=ticket.created_at,
                )
            )
        except (InvalidInput, DatabaseError, ValidationError) as exc:
            log.warning("support: ticket %s not kept in memory: %s", ticket.id, exc)

    def build(
        self, env: AgentEnv, source: Source[Ticket], proposal: SupportProposal, briefing: SupportBriefing
    ) -> list[ActionRequest]:
        if proposal.reply is None and proposal.refund is None and not (proposal.needs_human or "").strip():
            raise Refused("it has no reply and flags nothing")
        requests = []
        if proposal.reply is not None:
            requests.append(self._reply(env, source, proposal, proposal.reply, briefing))
        if proposal.refund is not None:
            requests.append(self._money_back(env, source, proposal, proposal.refund))
        if (proposal.needs_human or "").strip():
            requests.append(self._flag(env, source, proposal.needs_human or "", proposal))
        return requests

    def when_refused(self, env: AgentEnv, source: Source[Ticket], reason: str) -> list[ActionRequest]:
        return [self._flag(env, source, f"opsdesk did not send the drafted answer: {reason}.", None)]

    def when_left_out(self, env: AgentEnv, source: Source[Ticket]) -> list[ActionRequest]:
        return [self._flag(env, source, "opsdesk drafted no answer for this ticket.", None)]

    def _reply(
        self, env: AgentEnv, source: Source[Ticket], proposal: SupportProposal, reply: Reply, briefing: SupportBriefing
    ) -> ActionRequest:
        ticket = source.record
        found = briefing.found[source.ref]
        cited = list(dict.fromkeys(ref.strip() for ref in reply.cited))
        unknown = [ref for ref in cited if ref not in found]
        if unknown:
            raise Refused(
                f"it cites {', '.join(clip(ref, 40) for ref in unknown[:5])}, "
                "which memory did not return for this ticket"
            )
        body = reply.body.strip()
        if not body:
            raise Refused("the reply is empty")
        subject = one_line(reply.subject, 200) or one_line(f"Re: {ticket.subject or f'your ticket #{ticket.id}'}", 200)
        # checked before the citations are added: their links come from memory, not from the model;
        # the ticket is the customer's text, so only the articles found for it are trusted
        flags = unsourced_flags(env.settings, f"{subject}\n{body}", business_written(found.values()))
        articles = [found[ref] for ref in cited if found[ref].kind == "kb_article"]
        if articles:
            body += "\n\nArticles this answer is based on:\n" + "\n".join(
                f"- {hit.title or hit.source_id}" + (f" ({hit.metadata['url']})" if hit.metadata.get("url") else "")
                for hit in articles
            )
        sources_line = ", ".join(f"{found[ref].title or found[ref].source_id} ({ref})" for ref in cited) or "none"
        return self.request(
            source,
            "reply",
            kind="email.send",
            summary=f"Reply to ticket #{ticket.id}: {subject}",
            reasoning=f"{proposal.rationale}\nCites: {sources_line}",
            proposal=proposal,
            floor=Tier(env.settings.agent_email_min_tier),
            flags=flags,
            payload={
                "to": {"email": ticket.requester_email},
                "subject": subject,
                "html": email_html(body),
                "text": body,
            },
            impact=Impact(recipients=1),
            ticket_id=ticket.id,
            citations=[
                {
                    "ref": ref,
                    "memory_id": found[ref].id,
                    "kind": found[ref].kind,
                    "title": found[ref].title,
                    "source": found[ref].source,
                    "source_id": found[ref].source_id,
                }
                for ref in cited
            ],
        )

    def _money_back(
        self, env: AgentEnv, source: Source[Ticket], proposal: SupportProposal, money: MoneyBack
    ) -> ActionRequest:
        ticket = source.record
        amount = _amount(money.amount_usd)
        what = "Refund" if money.type == "refund" else "Credit"
        return self.request(
            source,
            "money",
            kind="hubspot.task",
            summary=f"{what} ${amount:,.2f} for ticket #{ticket.id}",
            reasoning=proposal.rationale,
            proposal=proposal,
            impact=Impact(cost_usd=amount),
            ticket_id=ticket.id,
            payload={
                "object_type": "contact",
                "object_id": ticket.requester_contact_id,
                "subject": f"{what} ${amount:,.2f} for ticket #{ticket.id}: decide and pay",
                "body": clip(f"{money.reason.strip()}\n\nTicket #{ticket.id}: {ticket.subject or ''}", 20_000),
                "due": (env.now + timedelta(days=1)).isoformat(),
                "priority": "HIGH",
            },
        )

    def _flag(self, env: AgentEnv, source: Source[Ticket], why: str, proposal: SupportProposal | None) -> ActionRequest:
        ticket = source.record
        return self.request(
            source,
            "flag",
            kind="hubspot.task",
            summary=f"Ticket #{ticket.id} needs a human",
            reasoning=clip(why, 2000),
            proposal=proposal,
            ticket_id=ticket.id,
            payload={
                "object_type": "contact",
                "object_id": ticket.requester_contact_id,
                "subject": clip(f"Needs a human: ticket #{ticket.id} {one_line(ticket.subject or '', 150)}", 500),
                "body": clip(why.strip(), 20_000),
                "due": env.now.isoformat(),
                "priority": "HIGH",
            },
        )


def _amount(text: str) -> Decimal:
    """Dollars and cents, positive, and not absurd; anything else is refused."""
    try:
        amount = Decimal(text.strip().lstrip("$").replace(",", ""))
    except InvalidOperation:
        raise Refused(f"the amount {clip(text, 40)!r} is not a number of dollars") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_MONEY or amount != amount.quantize(Decimal("0.01")):
        raise Refused(f"the amount {clip(text, 40)!r} is not a positive number of dollars and cents up to {MAX_MONEY}")
    return amount.quantize(Decimal("0.01"))
