"""What the agents and handlers get from HubSpot: pydantic models built from the SDK's objects.

HubSpot sends every property as a string ("" when empty; dates as ISO strings or ms epochs); these
models turn them into typed values once, so nothing downstream parses CRM strings. Every property
is whatever a CRM user or a web form wrote: its text is made storable (integrations.untrusted), and an
optional value that does not read as its type (an amount "NaN", a date "soon") is taken as unknown,
so one odd record never fails a whole listing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from integrations.untrusted import Storable

ObjectType = Literal["contact", "deal"]
EngagementKind = Literal["note", "task"]

CONTACT_PROPERTIES = ["email", "firstname", "lastname", "createdate"]
DEAL_PROPERTIES = [
    "dealname",
    "dealstage",
    "pipeline",
    "amount",
    "notes_last_updated",
    "closedate",
    "createdate",
    "hubspot_owner_id",
]
TICKET_PROPERTIES = [
    "subject",
    "content",
    "hs_pipeline",
    "hs_pipeline_stage",
    "hs_ticket_priority",
    "createdate",
    "first_agent_reply_date",
    "last_reply_date",
]

# HUBSPOT_DEFINED association type ids (hubspot/crm/association_type.py)
ASSOCIATION_TYPE_IDS: dict[tuple[EngagementKind, ObjectType], int] = {
    ("note", "contact"): 202,
    ("note", "deal"): 214,
    ("task", "contact"): 204,
    ("task", "deal"): 216,
}
TICKET_TO_CONTACT = 16
DEAL_TO_CONTACT = 3


def properties_of(obj: Any) -> dict[str, str | None]:
    """An SDK object's properties with HubSpot's empty strings read as missing."""
    return {name: (value if value not in ("", None) else None) for name, value in (obj.properties or {}).items()}


def _unknown_if_unreadable(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


OrUnknown = WrapValidator(_unknown_if_unreadable)


class _FromHubSpot(Storable):
    model_config = ConfigDict(frozen=True)


class Contact(_FromHubSpot):
    id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    created_at: datetime

    @property
    def name(self) -> str | None:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or None

    @classmethod
    def from_sdk(cls, obj: Any) -> Contact:
        props = properties_of(obj)
        return cls(
            id=obj.id,
            email=props.get("email"),
            first_name=props.get("firstname"),
            last_name=props.get("lastname"),
            created_at=obj.created_at,
        )


class Deal(_FromHubSpot):
    id: str
    name: str | None
    stage: str | None
    pipeline: str | None
    amount: Annotated[Decimal | None, OrUnknown]
    last_activity_at: Annotated[datetime | None, OrUnknown]  # notes_last_updated: HubSpot's "Last Activity Date"
    close_date: Annotated[datetime | None, OrUnknown]
    owner_id: str | None
    created_at: datetime

    @classmethod
    def from_sdk(cls, obj: Any) -> Deal:
        props = properties_of(obj)
        return cls.model_validate(
            {
                "id": obj.id,
                "name": props.get("dealname"),
                "stage": props.get("dealstage"),
                "pipeline": props.get("pipeline"),
                "amount": props.get("amount"),
                "last_activity_at": props.get("notes_last_updated"),
                "close_date": props.get("closedate"),
                "owner_id": props.get("hubspot_owner_id"),
                "created_at": obj.created_at,
            }
        )


class Ticket(_FromHubSpot):
    """An open ticket. Subject and content are the customer's words: untrusted input."""

    id: str
    subject: str | None
    content: str | None
    pipeline: str | None
    stage: str | None
    priority: str | None
    created_at: datetime
    last_customer_reply_at: Annotated[datetime | None, OrUnknown]  # last_reply_date: the customer wrote again
    requester_contact_id: str | None
    requester_email: str | None  # from the associated contact record, never from the ticket text

    @classmethod
    def from_sdk(cls, obj: Any, requester: Contact | None) -> Ticket:
        props = properties_of(obj)
        return cls.model_validate(
            {
                "id": obj.id,
                "subject": props.get("subject"),
                "content": props.get("content"),
                "pipeline": props.get("hs_pipeline"),
                "stage": props.get("hs_pipeline_stage"),
                "priority": props.get("hs_ticket_priority"),
                "created_at": obj.created_at,
                "last_customer_reply_at": props.get("last_reply_date"),
                "requester_contact_id": requester.id if requester else None,
                "requester_email": requester.email if requester else None,
            }
        )


class Engagement(_FromHubSpot):
    """A note or task opsdesk created (or found again by its marker)."""

    id: str
    kind: EngagementKind
    created_at: datetime
