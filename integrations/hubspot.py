"""HubSpot through hubspot-api-client 12: contacts, deals, tickets, notes, tasks, deal stages.

- Any access token as a Bearer (a legacy private app's `pat-…`, a service key, a project-based
  app's token: HubSpot documents no prefix); a legacy API key is refused here as well as in the
  app's settings (`hubspot_tokens`). How the SDK is built (host, no urllib3 retries), its request
  objects and its errors: `hubspot_sdk`, imported when the first client is made.
- Retries with backoff, Retry-After and the breaker come from `integrations.resilience`.
- Every call passes `_request_timeout`: the SDK otherwise sends `timeout=None`, which overrides any
  pool default and waits forever.
- Calls go through a limiter counted in `RateSlots` the app hands in (the database), so every
  process shares HubSpot's 10-second burst limit for all calls, and the CRM search API's own lower
  limit for searches.
- Creating a note or task is not idempotent at HubSpot. So a create is never repeated in-process
  after a failure that may have reached HubSpot (timeout, 5xx, dropped connection): that failure
  asks to be tried again only after `write_recheck_seconds`, longer than the in-process wait, so the
  executor reschedules the action, and the handler then first searches for the action's marker
  (search results lag writes by seconds, hence the wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr

from integrations.errors import NotConfigured
from integrations.hubspot_models import (
    ASSOCIATION_TYPE_IDS,
    CONTACT_PROPERTIES,
    DEAL_PROPERTIES,
    DEAL_TO_CONTACT,
    TICKET_PROPERTIES,
    TICKET_TO_CONTACT,
    Contact,
    Deal,
    Engagement,
    EngagementKind,
    ObjectType,
    Ticket,
)
from integrations.hubspot_tokens import hubspot_token_kind
from integrations.rate_limit import RateSlots, SharedRateLimiter
from integrations.resilience import CircuitBreaker, call_with_retries

if TYPE_CHECKING:
    from integrations.hubspot_sdk import SdkApis, Searchable

SYSTEM = "hubspot"
DEFAULT_BASE_URL = "https://api.hubapi.com"
MAX_IN_PROCESS_WAIT = 30.0  # a longer Retry-After goes back to the executor, which reschedules
SEARCH_PAGE_SIZE = 100
SEARCH_MAX_RESULTS = 10_000  # HubSpot answers 400 when paging past this

_BODY_PROPERTY: dict[EngagementKind, str] = {"note": "hs_note_body", "task": "hs_task_body"}
T = TypeVar("T")


class HubSpotConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = Field(10.0, gt=0)
    requests_per_10s: PositiveInt = 90  # the app's burst limit is 100 per 10 s: some room is left
    searches_per_second: int = Field(4, ge=1, le=5)  # CRM search has its own, lower limit
    # a create that may have reached HubSpot is looked for after this long, once search shows it
    write_recheck_seconds: float = Field(60.0, gt=MAX_IN_PROCESS_WAIT)
    attempts: PositiveInt = 3


class HubSpotLimiter:
    """HubSpot's burst limit per 10 s for every call, and the search API's per-second one, counted in
    shared slots: HubSpot counts all of the app's calls together, whichever process makes them."""

    def __init__(
        self,
        slots: RateSlots,
        per_10_seconds: int,
        searches_per_second: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.burst = SharedRateLimiter(slots, "hubspot", per_10_seconds, 10.0, sleep=sleep)
        self.search = SharedRateLimiter(slots, "hubspot-search", searches_per_second, 1.0, sleep=sleep)

    def acquire(self, *, search: bool) -> None:
        # The burst slot first: waiting for a search slot takes at most a second, so the call still
        # goes out in (or next to) the 10-s window it was counted in; the other order could wait
        # up to 10 s after taking its search second.
        self.burst.acquire()
        if search:
            self.search.acquire()


def to_ms(moment: datetime) -> str:
    """HubSpot's date filter values and hs_timestamp: milliseconds since the epoch, as a string."""
    if moment.tzinfo is None:
        raise ValueError("HubSpot times must be timezone-aware")
    return str(int(moment.timestamp() * 1000))


class HubSpotClient:
    def __init__(
        self,
        config: HubSpotConfig,
        *,
        slots: RateSlots,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        token = config.access_token.get_secret_value()
        if hubspot_token_kind(token) == "legacy_api_key":
            raise NotConfigured(
                "HubSpot needs an access token (service key, app token or private-app token); "
                "legacy API keys are refused",
                system=SYSTEM,
            )
        from integrations.hubspot_sdk import SdkApis  # ~0.6 s: loaded with the first client, not the config

        self.config = config
        self.limiter = HubSpotLimiter(slots, config.requests_per_10s, config.searches_per_second, sleep=sleep)
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        self._sleep = sleep
        self._apis: SdkApis = SdkApis(token, config.base_url)

    def close(self) -> None:
        self._apis.close()

    # --- reads ------------------------------------------------------------------------------
    def get_contact(self, contact_id: str) -> Contact:
        obj = self._call("read contact", self._apis.contacts_basic.get_by_id, contact_id, properties=CONTACT_PROPERTIES)
        return Contact.from_sdk(obj)

    def contacts_created_since(self, since: datetime, *, limit: int = 500) -> list[Contact]:
        found = self._search_all(
            "search new contacts",
            "contacts",
            filter_groups=[{"filters": [{"propertyName": "createdate", "operator": "GTE", "value": to_ms(since)}]}],
            sorts=[{"propertyName": "createdate", "direction": "ASCENDING"}],
            properties=CONTACT_PROPERTIES,
            limit=limit,
        )
        return [Contact.from_sdk(obj) for obj in found]

    def get_deal(self, deal_id: str) -> Deal:
        return Deal.from_sdk(
            self._call("read deal", self._apis.deals_basic.get_by_id, deal_id, properties=DEAL_PROPERTIES)
        )

    def stale_deals(self, *, inactive_days: int, now: datetime, limit: int = 500) -> list[Deal]:
        """Open deals with no activity logged for `inactive_days`: the last activity is older than
        the cutoff, or there was none and the deal itself is older."""
        cutoff = to_ms(now - timedelta(days=inactive_days))
        open_filter = self._not_in_closed_stage("deals", "dealstage")
        found = self._search_all(
            "search stale deals",
            "deals",
            filter_groups=[
                {"filters": [{"propertyName": "notes_last_updated", "operator": "LT", "value": cutoff}, *open_filter]},
                {
                    "filters": [
                        {"propertyName": "notes_last_updated", "operator": "NOT_HAS_PROPERTY"},
                        {"propertyName": "createdate", "operator": "LT", "value": cutoff},
                        *open_filter,
                    ]
                },
            ],
            sorts=[{"propertyName": "notes_last_updated", "direction": "ASCENDING"}],
            properties=DEAL_PROPERTIES,
            limit=limit,
        )
        return [Deal.from_sdk(obj) for obj in found]

    def open_tickets(self, *, limit: int = 100, unanswered_only: bool = False) -> list[Ticket]:
        """Tickets in a stage that is not closed, oldest first, with the requester's email read from
        the associated contact record. `unanswered_only`: no agent has replied in HubSpot yet."""
        filters = self._not_in_closed_stage("tickets", "hs_pipeline_stage")
        if unanswered_only:
            filters = [*filters, {"propertyName": "first_agent_reply_date", "operator": "NOT_HAS_PROPERTY"}]
        found = self._search_all(
            "search open tickets",
            "tickets",
            filter_groups=[{"filters": filters}] if filters else [],
            sorts=[{"propertyName": "createdate", "direction": "ASCENDING"}],
            properties=TICKET_PROPERTIES,
            limit=limit,
        )
        requesters = self._associated_contacts("tickets", [obj.id for obj in found], TICKET_TO_CONTACT)
        return [Ticket.from_sdk(obj, requesters.get(obj.id)) for obj in found]

    def deal_contacts(self, deal_ids: list[str]) -> dict[str, Contact]:
        """Each deal's contact (the deal-to-contact type first): whom a follow-up goes to."""
        return self._associated_contacts("deals", deal_ids, DEAL_TO_CONTACT)

    def marketing_contacts(self, *, limit: int = SEARCH_MAX_RESULTS) -> list[Contact]:
        """Contacts with an email that are marketing contacts (hs_marketable_status) and have not
        opted out of email (hs_email_optout unset or false): a newsletter's audience."""
        base = [
            {"propertyName": "email", "operator": "HAS_PROPERTY"},
            {"propertyName": "hs_marketable_status", "operator": "EQ", "value": "true"},
        ]
        found = self._search_all(
            "search marketing contacts",
            "contacts",
            filter_groups=[
                {"filters": [*base, {"propertyName": "hs_email_optout", "operator": "NOT_HAS_PROPERTY"}]},
                {"filters": [*base, {"propertyName": "hs_email_optout", "operator": "EQ", "value": "false"}]},
            ],
            sorts=[{"propertyName": "createdate", "direction": "ASCENDING"}],
            properties=CONTACT_PROPERTIES,
            limit=limit,
        )
        return [Contact.from_sdk(obj) for obj in found]

    def find_engagement(self, kind: EngagementKind, marker: str) -> Engagement | None:
        """The note or task whose body carries `marker`, if HubSpot has one."""
        found = self._search_all(
            f"search {kind} by marker",
            "notes" if kind == "note" else "tasks",
            filter_groups=[
                {"filters": [{"propertyName": _BODY_PROPERTY[kind], "operator": "CONTAINS_TOKEN", "value": marker}]}
            ],
            sorts=[],
            properties=[_BODY_PROPERTY[kind]],
            limit=1,
        )
        return Engagement(id=found[0].id, kind=kind, created_at=found[0].created_at) if found else None

    # --- writes -----------------------------------------------------------------------------
    def create_note(
        self, *, object_type: ObjectType, object_id: str, body: str, marker: str, timestamp: datetime
    ) -> Engagement:
        note = self._apis.engagement(
            "note",
            {"hs_timestamp": to_ms(timestamp), "hs_note_body": _with_marker(body, marker)},
            object_id,
            ASSOCIATION_TYPE_IDS[("note", object_type)],
        )
        created = self._call(
            "create note", self._apis.notes_basic.create, write_once=True, simple_public_object_input_for_create=note
        )
        return Engagement(id=created.id, kind="note", created_at=created.created_at)

    def create_task(
        self,
        *,
        object_type: ObjectType,
        object_id: str,
        subject: str,
        body: str,
        due: datetime,
        priority: Literal["LOW", "MEDIUM", "HIGH"],
        marker: str,
        owner_id: str | None = None,
    ) -> Engagement:
        properties = {
            "hs_timestamp": to_ms(due),
            "hs_task_subject": subject,
            "hs_task_body": _with_marker(body, marker),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": priority,
            "hs_task_type": "TODO",  # HubSpot's task type for a to-do (its other types are CALL and EMAIL)
        }
        if owner_id is not None:
            properties["hubspot_owner_id"] = owner_id
        task = self._apis.engagement("task", properties, object_id, ASSOCIATION_TYPE_IDS[("task", object_type)])
        created = self._call(
            "create task", self._apis.tasks_basic.create, write_once=True, simple_public_object_input_for_create=task
        )
        return Engagement(id=created.id, kind="task", created_at=created.created_at)

    def update_deal_stage(self, deal_id: str, stage: str) -> Deal:
        """Setting a property is idempotent, so this one is retried like a read."""
        updated = self._call(
            "update deal stage",
            self._apis.deals_basic.update,
            deal_id,
            simple_public_object_input=self._apis.deal_update({"dealstage": stage}),
        )
        return Deal.from_sdk(updated)

    # --- plumbing ---------------------------------------------------------------------------
    def _not_in_closed_stage(self, object_type: Literal["deals", "tickets"], prop: str) -> list[dict[str, Any]]:
        """A search filter excluding every closed stage of every pipeline (stage ids differ per
        account, so they are read from the pipelines API, not assumed)."""
        answer = self._call(f"read {object_type} pipelines", self._apis.pipelines.get_all, object_type)
        closed = sorted(
            {
                stage.id
                for pipeline in answer.results
                for stage in pipeline.stages
                if (stage.metadata or {}).get("isClosed") == "true"
                or (stage.metadata or {}).get("ticketState") == "CLOSED"
            }
        )
        return [{"propertyName": prop, "operator": "NOT_IN", "values": closed}] if closed else []

    def _search_all(
        self,
        what: str,
        object_type: Searchable,
        *,
        filter_groups: list[dict[str, Any]],
        sorts: list[dict[str, str]],
        properties: list[str],
        limit: int,
    ) -> list[Any]:
        """Every page of a search, following `paging.next.after`, up to `limit` results."""
        limit = min(limit, SEARCH_MAX_RESULTS)
        results: list[Any] = []
        after: str | None = None
        while len(results) < limit:
            request = self._apis.search_request(
                object_type,
                filter_groups=filter_groups,
                sorts=sorts,
                properties=properties,
                limit=min(SEARCH_PAGE_SIZE, limit - len(results)),
                after=after,
            )
            page = self._call(what, self._apis.search(object_type), search=True, public_object_search_request=request)
            results.extend(page.results)
            after = page.paging.next.after if page.paging and page.paging.next else None
            if after is None or not page.results:
                break
        return results[:limit]

    def _associated_contacts(
        self, from_type: Literal["tickets", "deals"], ids: list[str], preferred_type: int
    ) -> dict[str, Contact]:
        """Each object's associated contact (the association type `preferred_type` first)."""
        contact_of: dict[str, str] = {}
        for chunk in _chunks(ids, 100):
            batch = self._apis.associations_batch_request(chunk)
            answer = self._call(
                f"read {from_type} contacts",
                self._apis.associations_batch.get_page,
                from_type,
                "contacts",
                batch_input_public_fetch_associations_batch_request=batch,
            )
            for row in answer.results:
                ranked = sorted(
                    row.to or [],
                    key=lambda to: not any(spec.type_id == preferred_type for spec in to.association_types or []),
                )
                if ranked:
                    contact_of[row._from.id] = str(ranked[0].to_object_id)
        contacts_by_id: dict[str, Contact] = {}
        for chunk in _chunks(sorted(set(contact_of.values())), 100):
            batch = self._apis.contacts_batch_request(chunk, CONTACT_PROPERTIES)
            answer = self._call(
                f"read {from_type} contact records",
                self._apis.contacts_batch.read,
                batch_read_input_simple_public_object_id=batch,
            )
            contacts_by_id.update({obj.id: Contact.from_sdk(obj) for obj in answer.results})
        return {owner: contacts_by_id[contact] for owner, contact in contact_of.items() if contact in contacts_by_id}

    def _call(
        self,
        what: str,
        method: Callable[..., T],
        *args: Any,
        search: bool = False,
        write_once: bool = False,
        **kwargs: Any,
    ) -> T:
        """One SDK call with a timeout, behind the limiter, the breaker and the retry policy.
        `write_once`: a create that must not be repeated after a failure that may have reached HubSpot."""

        def once() -> T:
            self.limiter.acquire(search=search)
            try:
                return method(*args, _request_timeout=self.config.timeout_seconds, **kwargs)
            except Exception as exc:
                raise self._apis.failure(
                    what, exc, write_once=write_once, write_recheck_seconds=self.config.write_recheck_seconds
                ) from exc

        return call_with_retries(
            once,
            breaker=self.breaker,
            attempts=self.config.attempts,
            max_retry_after=MAX_IN_PROCESS_WAIT,
            sleep=self._sleep,
        )


def _with_marker(body: str, marker: str) -> str:
    return f"{body}\n\n(opsdesk ref {marker})"


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
