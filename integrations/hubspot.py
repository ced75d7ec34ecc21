"""HubSpot through hubspot-api-client 12: contacts, deals, tickets, notes, tasks, deal stages.

- Any access token as a Bearer (a legacy private app's `pat-…`, a service key, a project-based
  app's token: HubSpot documents no prefix); a legacy API key is refused here as well as in the
  settings (app.credential_kinds). How the SDK is built (host, no urllib3 retries): `hubspot_sdk`.
- Retries with backoff, Retry-After and the breaker come from `integrations.resilience`.
- Every call passes `_request_timeout`: the SDK otherwise sends `timeout=None`, which overrides any
  pool default and waits forever.
- Calls go through a limiter counted in the database, so every process shares HubSpot's 10-second
  burst limit for all calls, and the CRM search API's own lower limit for searches.
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
from typing import Any, Literal, TypeVar

import hubspot.crm.associations.v4 as associations_v4
import hubspot.crm.contacts as contacts
import hubspot.crm.deals as deals
import hubspot.crm.objects.notes as notes
import hubspot.crm.objects.tasks as tasks
import hubspot.crm.tickets as tickets
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error

from app.credential_kinds import hubspot_token_kind
from app.database import Database
from app.settings import Settings
from integrations.errors import (
    IntegrationError,
    NotConfigured,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)
from integrations.hubspot_models import (
    CONTACT_PROPERTIES,
    DEAL_PROPERTIES,
    TICKET_PROPERTIES,
    Contact,
    Deal,
    Engagement,
    EngagementKind,
    ObjectType,
    Ticket,
)
from integrations.hubspot_sdk import API_ERRORS, SdkApis, error_details
from integrations.rate_limit import SharedRateLimiter
from integrations.resilience import CircuitBreaker, call_with_retries, parse_retry_after

SYSTEM = "hubspot"
DEFAULT_BASE_URL = "https://api.hubapi.com"
MAX_IN_PROCESS_WAIT = 30.0  # a longer Retry-After goes back to the executor, which reschedules
RATE_LIMIT_FALLBACK_WAIT = 10.0  # a 429 without Retry-After: HubSpot's rolling window is 10 s
DAILY_LIMIT_WAIT = 3600.0  # the daily limit resets at the account's midnight, which we do not know
SEARCH_PAGE_SIZE = 100
SEARCH_MAX_RESULTS = 10_000  # HubSpot answers 400 when paging past this

# HUBSPOT_DEFINED association type ids (hubspot/crm/association_type.py)
ASSOCIATION_TYPE_IDS: dict[tuple[EngagementKind, ObjectType], int] = {
    ("note", "contact"): 202,
    ("note", "deal"): 214,
    ("task", "contact"): 204,
    ("task", "deal"): 216,
}
TICKET_TO_CONTACT = 16
DEAL_TO_CONTACT = 3

_BODY_PROPERTY: dict[EngagementKind, str] = {"note": "hs_note_body", "task": "hs_task_body"}
T = TypeVar("T")


class HubSpotLimiter:
    """HubSpot's burst limit per 10 s for every call, and the search API's per-second one, counted in
    the database: HubSpot counts all of the app's calls together, whichever process makes them."""

    def __init__(
        self,
        db: Database,
        per_10_seconds: int,
        searches_per_second: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.burst = SharedRateLimiter(db, "hubspot", per_10_seconds, 10.0, sleep=sleep)
        self.search = SharedRateLimiter(db, "hubspot-search", searches_per_second, 1.0, sleep=sleep)

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
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        limiter: HubSpotLimiter,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 3,
        write_recheck_seconds: float = 60.0,
    ) -> None:
        if hubspot_token_kind(access_token) == "legacy_api_key":
            raise NotConfigured(
                "HubSpot needs an access token (service key, app token or private-app token); "
                "legacy API keys are refused",
                system=SYSTEM,
            )
        if write_recheck_seconds <= MAX_IN_PROCESS_WAIT:
            raise ValueError(f"write_recheck_seconds must exceed {MAX_IN_PROCESS_WAIT:g} s")
        self.timeout = timeout
        self.limiter = limiter
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        self.attempts = attempts
        self.write_recheck_seconds = write_recheck_seconds
        self._sleep = sleep
        self._apis = SdkApis(access_token, base_url)

    @classmethod
    def from_settings(
        cls, settings: Settings, db: Database, *, sleep: Callable[[float], None] = time.sleep
    ) -> HubSpotClient:
        token = settings.hubspot_private_app_token
        if token is None:
            raise PermanentError("HUBSPOT_PRIVATE_APP_TOKEN is not configured", system=SYSTEM)
        return cls(
            token.get_secret_value(),
            base_url=settings.hubspot_base_url or DEFAULT_BASE_URL,
            timeout=settings.hubspot_timeout_seconds,
            limiter=HubSpotLimiter(
                db, settings.hubspot_requests_per_10s, settings.hubspot_searches_per_second, sleep=sleep
            ),
            sleep=sleep,
            write_recheck_seconds=settings.hubspot_write_recheck_seconds,
        )

    def close(self) -> None:
        self._apis.close()

    # --- reads ------------------------------------------------------------------------------
    def get_contact(self, contact_id: str) -> Contact:
        obj = self._call("read contact", self._apis.contacts_basic.get_by_id, contact_id, properties=CONTACT_PROPERTIES)
        return Contact.from_sdk(obj)

    def contacts_created_since(self, since: datetime, *, limit: int = 500) -> list[Contact]:
        found = self._search_all(
            "search new contacts",
            self._apis.contacts_search.do_search,
            contacts.PublicObjectSearchRequest,
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
            self._apis.deals_search.do_search,
            deals.PublicObjectSearchRequest,
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
            self._apis.tickets_search.do_search,
            tickets.PublicObjectSearchRequest,
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
            self._apis.contacts_search.do_search,
            contacts.PublicObjectSearchRequest,
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
        search, request = (
            (self._apis.notes_search.do_search, notes.PublicObjectSearchRequest)
            if kind == "note"
            else (self._apis.tasks_search.do_search, tasks.PublicObjectSearchRequest)
        )
        found = self._search_all(
            f"search {kind} by marker",
            search,
            request,
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
        note = notes.SimplePublicObjectInputForCreate(
            properties={"hs_timestamp": to_ms(timestamp), "hs_note_body": _with_marker(body, marker)},
            associations=[
                notes.PublicAssociationsForObject(
                    to=notes.PublicObjectId(id=object_id),
                    types=[
                        notes.AssociationSpec(
                            association_category="HUBSPOT_DEFINED",
                            association_type_id=ASSOCIATION_TYPE_IDS[("note", object_type)],
                        )
                    ],
                )
            ],
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
            "hs_task_type": "TODO",
        }
        if owner_id is not None:
            properties["hubspot_owner_id"] = owner_id
        task = tasks.SimplePublicObjectInputForCreate(
            properties=properties,
            associations=[
                tasks.PublicAssociationsForObject(
                    to=tasks.PublicObjectId(id=object_id),
                    types=[
                        tasks.AssociationSpec(
                            association_category="HUBSPOT_DEFINED",
                            association_type_id=ASSOCIATION_TYPE_IDS[("task", object_type)],
                        )
                    ],
                )
            ],
        )
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
            simple_public_object_input=deals.SimplePublicObjectInput(properties={"dealstage": stage}),
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
        search: Callable[..., Any],
        request_type: type,
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
            request = request_type(
                filter_groups=filter_groups,
                sorts=sorts,
                properties=properties,
                limit=min(SEARCH_PAGE_SIZE, limit - len(results)),
                after=after,
            )
            page = self._call(what, search, search=True, public_object_search_request=request)
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
            batch = associations_v4.BatchInputPublicFetchAssociationsBatchRequest(
                inputs=[associations_v4.PublicFetchAssociationsBatchRequest(id=object_id) for object_id in chunk]
            )
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
            batch = contacts.BatchReadInputSimplePublicObjectId(
                inputs=[contacts.SimplePublicObjectId(id=contact_id) for contact_id in chunk],
                properties=CONTACT_PROPERTIES,
                properties_with_history=[],
            )
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
                return method(*args, _request_timeout=self.timeout, **kwargs)
            except Exception as exc:
                raise self._failure(what, exc, write_once=write_once) from exc

        return call_with_retries(
            once, breaker=self.breaker, attempts=self.attempts, max_retry_after=MAX_IN_PROCESS_WAIT, sleep=self._sleep
        )

    def _failure(self, what: str, exc: Exception, *, write_once: bool) -> IntegrationError:
        if isinstance(exc, API_ERRORS):
            details = error_details(exc)
            status = exc.status or 0  # 0: the SDK's own wrapping of a TLS failure
            if status == 429:
                wait = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                if wait is None:
                    wait = DAILY_LIMIT_WAIT if details.get("policy") == "DAILY" else RATE_LIMIT_FALLBACK_WAIT
                return RateLimited(
                    f"{what}: 429 rate limited ({details.get('policy', 'unknown policy')})",
                    system=SYSTEM,
                    retry_after=wait,
                    details=details,
                )
            if status >= 500 or status == 0:
                return self._maybe_applied(what, f"HTTP {status}", details, write_once)
            return PermanentError(
                f"{what}: HTTP {status}: {details.get('message', 'refused')}", system=SYSTEM, details=details
            )
        if isinstance(exc, ConnectTimeoutError):  # also NewConnectionError: HubSpot never saw it
            return TransientError(f"{what}: cannot connect ({type(exc).__name__})", system=SYSTEM)
        if isinstance(exc, Urllib3Error):  # a read timeout or a dropped connection
            return self._maybe_applied(what, type(exc).__name__, {}, write_once)
        if write_once:  # the answer could not be read: the object may exist
            return OutcomeUnknown(f"{what}: unreadable answer ({type(exc).__name__})", system=SYSTEM)
        return PermanentError(f"{what}: unexpected answer ({type(exc).__name__}: {exc})", system=SYSTEM)

    def _maybe_applied(self, what: str, why: str, details: dict[str, Any], write_once: bool) -> TransientError:
        if not write_once:
            return TransientError(f"{what}: {why}", system=SYSTEM, details=details)
        return TransientError(
            f"{what}: {why}; it may have been created, so the next attempt first looks for it "
            f"(in {self.write_recheck_seconds:g} s, once HubSpot's search has caught up)",
            system=SYSTEM,
            retry_after=self.write_recheck_seconds,
            details={**details, "may_have_applied": True},
        )


def _with_marker(body: str, marker: str) -> str:
    return f"{body}\n\n(opsdesk ref {marker})"


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
