"""Pydantic models at the edges: what callers submit and decide, and what they get back."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


class Tier(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return list(Tier).index(self)


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


# How a decision reached opsdesk, recorded apart from the name typed: a signed review link, the
# inbox link, the API token, the terminal, or opsdesk itself (the policy's auto-approval, expiry).
Channel = Literal["link", "inbox", "api", "cli", "system"]

# Names opsdesk writes as actors itself (`policy`, `expiry`, `api:<name>`, `agent:<name>`...): a
# person may not type one, in any case or width, alone or as a prefix before a colon.
RESERVED_ACTORS = frozenset(
    {
        "api",
        "cli",
        "link",
        "inbox",
        "system",
        "policy",
        "expiry",
        "opsdesk",
        "agent",
        "action",
        "executor",
        "scheduler",
        "discord",
        "recovery",
        "test",
    }
)
_RESERVED = re.compile(r"^\s*(" + "|".join(sorted(RESERVED_ACTORS)) + r")\s*(:|$)")
# ZWNJ and ZWJ are the only invisible characters a name may hold (some scripts need them)
_NAME_JOINERS = {"\u200c", "\u200d"}


def _a_person_s_name(name: str) -> str:
    """One line of visible text, not a name opsdesk uses for itself (app.core.models.RESERVED_ACTORS):
    no control, format (bidirectional overrides could show `toor:ilc` as `cli:root`), line or
    paragraph separator, private-use or unassigned character."""
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") and char not in _NAME_JOINERS:
            raise ValueError(f"must be one line of visible text (it holds U+{ord(char):04X})")
    if _RESERVED.match(unicodedata.normalize("NFKC", name).casefold()):
        raise ValueError(
            f"{name!r} is a name opsdesk uses for itself ({', '.join(sorted(RESERVED_ACTORS))}, "
            "alone or before a colon): sign with your own name"
        )
    return name


# A reviewer's name as typed (a review link, the inbox, `decided_by` over the API, `--as`).
ReviewerName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), AfterValidator(_a_person_s_name)
]


class Impact(BaseModel):
    """The facts the risk policy reads. Computed by code, never taken from model text."""

    model_config = ConfigDict(extra="forbid")

    recipients: int = Field(0, ge=0, le=100_000_000)
    cost_usd: Decimal = Field(Decimal(0), ge=0, le=1_000_000_000, decimal_places=2)
    public: bool = False
    reversible: bool = True


class ActionMetadata(BaseModel):
    """Who drafted it and with what; the input/output snapshots are kept for the audit."""

    model_config = ConfigDict(extra="allow")

    model_id: str | None = Field(None, max_length=200)
    confidence: float | None = Field(None, ge=0, le=1)
    task_type: str | None = Field(None, max_length=100)
    input_snapshot: Any = None
    output_snapshot: Any = None


Name = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Name
    kind: str = Field(min_length=1, max_length=64)
    summary: str = Field(min_length=1, max_length=1000)
    reasoning: str = Field("", max_length=20_000)
    payload: dict[str, Any]
    impact: Impact = Field(default_factory=Impact)
    task_type: str | None = Field(None, max_length=100)
    metadata: ActionMetadata = Field(default_factory=ActionMetadata)
    dedupe_key: str | None = Field(None, min_length=1, max_length=300)
    suggested_tier: Tier | None = None
    # what code found in the draft that a person should see (an address the data did not give):
    # each raises the tier to at least its own, and is listed with the policy's reasons
    flags: list[Reason] = Field(default_factory=list, max_length=20)


class Reason(BaseModel):
    # policy: a floor from the settings (AGENT_EMAIL_MIN_TIER), not from the action's facts
    dimension: Literal["recipients", "money", "public", "irreversible", "model", "content", "policy", "none"]
    tier: Tier
    detail: str


class SubmitResult(BaseModel):
    id: UUID
    status: Status
    risk_tier: Tier
    reasons: list[Reason]
    duplicate: bool = False


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "modify"]
    reason: str | None = Field(None, max_length=5000)
    modifications: dict[str, Any] | None = None
    decided_by: ReviewerName | None = None


class ApiDecisionRequest(DecisionRequest):
    """A decision over the Bearer API. Approving a CRITICAL action needs `pin` when APPROVAL_PIN is
    set; it is compared and counted, never stored."""

    pin: str | None = Field(None, max_length=200, repr=False)


class ActionRecord(BaseModel):
    """An action as the database returns it (attempt tokens never leave the database layer)."""

    model_config = ConfigDict(extra="ignore")

    id: UUID
    agent: str
    kind: str
    task_type: str | None
    summary: str
    reasoning: str
    requested_action: dict[str, Any]
    estimated_impact: dict[str, Any]
    risk_level: Tier
    risk_reasons: list[dict[str, Any]]
    metadata: dict[str, Any]
    status: Status
    draft_hash: str
    decided_by: str | None
    decided_via: Channel | None = None  # the channel, apart from the name typed
    decision: Literal["approved", "rejected", "modified"] | None
    feedback: str | None
    modifications: dict[str, Any] | None
    rejection_reason: str | None
    requested_at: datetime
    expires_at: datetime | None
    decided_at: datetime | None
    attempts: int
    result: dict[str, Any] | list[Any] | None = None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class ActionPage(BaseModel):
    items: list[ActionRecord]
    total: int
    limit: int
    offset: int


class ReviewState(BaseModel):
    """What a review page reads in one call: the action (None if there is none) at database time."""

    now: datetime
    action: ActionRecord | None
    pin_failures: int


class PinTry(BaseModel):
    allowed: bool
    locked: bool
    failures: int
    remaining: int


class FeedbackItem(BaseModel):
    """A reviewer's rejection reason, edit or note on one of an agent's drafts."""

    model_config = ConfigDict(extra="ignore")

    id: UUID
    kind: str
    summary: str
    status: Status
    decision: Literal["approved", "rejected", "modified"] | None
    decided_by: str | None
    decided_at: datetime | None
    rejection_reason: str | None
    modifications: dict[str, Any] | None
    feedback: str | None
