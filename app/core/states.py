"""The words of an action's life: its risk tier, its status, and how a decision reached opsdesk.

Plain enums, apart from the pydantic models (app.core.models) that use them, so the command line
can offer them as choices without importing the models."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


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
