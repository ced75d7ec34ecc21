"""What an agent is made of: the `Source`s it reads, the `Proposal`s and `Plan` the model answers
with, the `Briefing` it adds, the `AgentEnv` a run hands it, and the `Agent` base class whose
`find_sources`, `brief` and `build` each agent writes. How one run uses them, step by step, is
agents/run.py.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agents.drafting import clip
from agents.prompt import DataBlock
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.database import Database
from app.core.models import ActionMetadata, ActionRequest, Impact, Reason, Tier
from app.core.settings import Settings
from app.memory.store import MemoryStore

if TYPE_CHECKING:
    from integrations.claude import ModelResolution

# refs and versions: no `/` (the key's separator) and nothing a LIKE pattern treats specially
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:+-]{0,99}$")

RecordT = TypeVar("RecordT")
OutputT = TypeVar("OutputT", bound=BaseModel)


@dataclass(frozen=True)
class Source(Generic[RecordT]):
    """Something an agent may draft for: `ref` names it in the prompt and the plan, `version` the
    state of its input (the day for a stale deal, the customer's last message for a ticket)."""

    ref: str
    version: str
    record: RecordT

    def __post_init__(self) -> None:
        for name in ("ref", "version"):
            if not _TOKEN.match(getattr(self, name)):
                raise ValueError(f"source {name} {getattr(self, name)!r} must match {_TOKEN.pattern}")

    def prefix(self, agent: str) -> str:
        return f"{agent}/{self.ref}/"

    def input_prefix(self, agent: str) -> str:
        return f"{agent}/{self.ref}/{self.version}/"


class Proposal(BaseModel):
    """What every proposal carries; each agent's plan adds its own parts. Fields the schema does not
    have (an address, a "bcc", a "kind") are dropped, never acted on."""

    model_config = ConfigDict(extra="ignore")

    ref: str = Field(description="The ref of the source this is for, exactly as in its fence label")
    rationale: str = Field("", description="One or two sentences for the reviewer")
    confidence: float = Field(0.5, description="From 0 to 1")
    suggested_tier: Tier | None = Field(None, description="Only to ask for more scrutiny; null otherwise")


ProposalT = TypeVar("ProposalT", bound=Proposal)


class Plan(BaseModel, Generic[ProposalT]):
    """The model's answer: each agent's plan is `Plan[ItsProposal]`."""

    model_config = ConfigDict(extra="ignore")

    proposals: list[ProposalT]


class Refused(Exception):
    """A proposal that cannot become actions as it stands; the message says why, in plain words.
    `keep`: the actions of the parts that can still go (the blog post when the newsletter cannot)."""

    def __init__(self, reason: str, keep: Sequence[ActionRequest] = ()) -> None:
        super().__init__(reason)
        self.keep = list(keep)


@dataclass
class Briefing:
    """What the model is shown: the fenced data and the task."""

    blocks: list[DataBlock]
    task: str


BriefingT = TypeVar("BriefingT", bound=Briefing)


class Planner(Protocol):
    """integrations.claude.ClaudeClient, the only way to Claude."""

    def structured(
        self,
        agent: str,
        system: str,
        messages: Sequence[Mapping[str, Any]],
        output: type[OutputT],
        *,
        max_tokens: int = 4096,
        call_ids: list[int] | None = None,
    ) -> OutputT: ...

    def resolve_model(self) -> ModelResolution: ...


@dataclass
class AgentEnv:
    settings: Settings
    db: Database
    queue: ApprovalQueue
    clients: Clients
    memory: MemoryStore
    planner: Callable[[], Planner]  # built on first use: a run with nothing to do needs no key
    now: datetime  # the database's clock, as the queue and the links see it
    dry_run: bool = False  # build and tier, write nothing but the run record

    @property
    def today(self) -> date:
        return self.now.astimezone(self.settings.time_zone).date()


class Agent(ABC, Generic[RecordT, ProposalT, BriefingT]):
    name: ClassVar[str]
    cron_setting: ClassVar[str]  # the Settings field holding its crontab (the schedule's job)
    kinds: ClassVar[Mapping[str, str]]  # the action kinds it may lead to -> what the prompt says of each
    rules: ClassVar[str]
    example: ClassVar[str]  # a source as the prompt shows it, and a good answer for it
    plan_model: ClassVar[type[Plan[Any]]]

    @abstractmethod
    def find_sources(self, env: AgentEnv) -> list[Source[RecordT]]: ...

    @abstractmethod
    def brief(self, env: AgentEnv, sources: Sequence[Source[RecordT]]) -> BriefingT: ...

    @abstractmethod
    def build(
        self, env: AgentEnv, source: Source[RecordT], proposal: ProposalT, briefing: BriefingT
    ) -> list[ActionRequest]:
        """The proposal's actions, every fact computed here; raise Refused when it cannot be done."""

    def when_refused(self, env: AgentEnv, source: Source[RecordT], reason: str) -> list[ActionRequest]:
        """What to submit instead of a refused proposal (nothing, unless the agent flags it)."""
        return []

    def when_left_out(self, env: AgentEnv, source: Source[RecordT]) -> list[ActionRequest]:
        """What to submit for a source the plan said nothing about."""
        return []

    def request(
        self,
        source: Source[RecordT],
        slot: str,
        *,
        kind: str,
        summary: str,
        reasoning: str,
        payload: dict[str, Any],
        impact: Impact | None = None,
        proposal: Proposal | None = None,
        floor: Tier | None = None,
        flags: Sequence[Reason] = (),
        **metadata: Any,
    ) -> ActionRequest:
        """An ActionRequest for `source`, keyed to its input. `floor` (an agent email's
        AGENT_EMAIL_MIN_TIER), the model's suggested tier and `flags` (what code found in the
        draft) each raise the tier, each with its own reason; none can lower it."""
        if floor is not None and floor is not Tier.LOW:
            flags = [
                Reason(
                    dimension="policy",
                    tier=floor,
                    detail=f"an agent's email waits for a person at {floor.value} or above (AGENT_EMAIL_MIN_TIER)",
                ),
                *flags,
            ]
        suggested = proposal.suggested_tier if proposal else None
        return ActionRequest(
            agent=self.name,
            kind=kind,
            summary=clip(summary, 1000),
            reasoning=clip(reasoning, 20_000),
            payload=payload,
            impact=impact or Impact(),
            task_type=f"{self.name}.{slot}",
            dedupe_key=f"{source.input_prefix(self.name)}{slot}",
            flags=list(flags),
            suggested_tier=suggested,
            metadata=ActionMetadata(
                confidence=_confidence(proposal),
                input_snapshot={"source": source.ref, "version": source.version},
                output_snapshot=proposal.model_dump(mode="json") if proposal else None,
                **metadata,
            ),
        )


def _confidence(proposal: Proposal | None) -> float | None:
    """The model's own estimate, kept only when it is one (a number from 0 to 1)."""
    if proposal is None or not math.isfinite(proposal.confidence):
        return None
    return min(max(proposal.confidence, 0.0), 1.0)
