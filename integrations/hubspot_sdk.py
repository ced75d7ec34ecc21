"""The hubspot-api-client 12 objects opsdesk uses, built once and configured alike.

- `HubSpot(access_token=..., host=..., retry=...)`: the SDK's discovery copies every keyword onto
  each generated package's `Configuration` (`setattr`; `retry` becomes `retries`), so the host
  (HUBSPOT_BASE_URL) and the retry policy reach every API, not just one. The SDK's `api_key` (the
  legacy hapikey) is never set.
- Its urllib3 retry is switched off with `Retry(total=False)`: urllib3 then raises the original
  error (no MaxRetryError) and repeats nothing behind our breaker and limiter. Left unset, urllib3's
  default quietly retries connection failures; a Retry with `allowed_methods=None` would repeat a
  note create after a 5xx that may have created it. `integrations.resilience` retries instead.
- Each discovery property access (`client.crm.deals.basic_api`) builds a new ApiClient with its own
  connection pool, hence the cache here.
- Every package has its own ApiException class; `API_ERRORS` holds those of the packages used, and
  `failure` turns them (and urllib3's) into our errors.
- The SDK's request objects are built here too, so `integrations.hubspot` (its config, its limiter,
  the client's logic) imports the SDK only when a client is made.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, Literal, TypeVar

import hubspot.crm.associations.v4 as associations_v4
import hubspot.crm.contacts as contacts
import hubspot.crm.deals as deals
import hubspot.crm.objects.notes as notes
import hubspot.crm.objects.tasks as tasks
import hubspot.crm.pipelines as pipelines
import hubspot.crm.tickets as tickets
from hubspot import HubSpot
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from integrations.errors import IntegrationError, OutcomeUnknown, PermanentError, RateLimited, TransientError
from integrations.resilience import parse_retry_after

SYSTEM = "hubspot"
RATE_LIMIT_FALLBACK_WAIT = 10.0  # a 429 without Retry-After: HubSpot's rolling window is 10 s
DAILY_LIMIT_WAIT = 3600.0  # the daily limit resets at the account's midnight, which we do not know

T = TypeVar("T")
Searchable = Literal["contacts", "deals", "tickets", "notes", "tasks"]
_SEARCH_REQUESTS: dict[Searchable, type] = {
    "contacts": contacts.PublicObjectSearchRequest,
    "deals": deals.PublicObjectSearchRequest,
    "tickets": tickets.PublicObjectSearchRequest,
    "notes": notes.PublicObjectSearchRequest,
    "tasks": tasks.PublicObjectSearchRequest,
}

API_ERRORS: tuple[type[Exception], ...] = (
    associations_v4.ApiException,
    contacts.ApiException,
    deals.ApiException,
    notes.ApiException,
    pipelines.ApiException,
    tasks.ApiException,
    tickets.ApiException,
)


def error_details(exc: Any) -> dict[str, Any]:
    """What HubSpot's error body says (`{"status","message","correlationId","category",...}`)."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    details = {
        "status": exc.status,
        "category": body.get("category"),
        "policy": body.get("policyName"),
        "correlation_id": body.get("correlationId"),
        "message": str(body["message"])[:300] if body.get("message") else None,
    }
    return {key: value for key, value in details.items() if value is not None}


class SdkApis:
    """The generated API objects, each built on first use and kept."""

    def __init__(self, access_token: str, base_url: str) -> None:
        self._sdk = HubSpot(
            access_token=access_token, host=base_url.rstrip("/"), retry=Retry(total=False, redirect=False)
        )
        self._built: list[Any] = []

    def _keep(self, api: T) -> T:
        self._built.append(api)
        return api

    @cached_property
    def contacts_basic(self) -> contacts.BasicApi:
        return self._keep(self._sdk.crm.contacts.basic_api)

    @cached_property
    def contacts_batch(self) -> contacts.BatchApi:
        return self._keep(self._sdk.crm.contacts.batch_api)

    @cached_property
    def contacts_search(self) -> contacts.SearchApi:
        return self._keep(self._sdk.crm.contacts.search_api)

    @cached_property
    def deals_basic(self) -> deals.BasicApi:
        return self._keep(self._sdk.crm.deals.basic_api)

    @cached_property
    def deals_search(self) -> deals.SearchApi:
        return self._keep(self._sdk.crm.deals.search_api)

    @cached_property
    def tickets_search(self) -> tickets.SearchApi:
        return self._keep(self._sdk.crm.tickets.search_api)

    @cached_property
    def notes_basic(self) -> notes.BasicApi:
        return self._keep(self._sdk.crm.objects.notes.basic_api)

    @cached_property
    def notes_search(self) -> notes.SearchApi:
        return self._keep(self._sdk.crm.objects.notes.search_api)

    @cached_property
    def tasks_basic(self) -> tasks.BasicApi:
        return self._keep(self._sdk.crm.objects.tasks.basic_api)

    @cached_property
    def tasks_search(self) -> tasks.SearchApi:
        return self._keep(self._sdk.crm.objects.tasks.search_api)

    @cached_property
    def associations_batch(self) -> associations_v4.BatchApi:
        return self._keep(self._sdk.crm.associations.v4.batch_api)

    @cached_property
    def pipelines(self) -> pipelines.PipelinesApi:
        return self._keep(self._sdk.crm.pipelines.pipelines_api)

    # --- the request objects ----------------------------------------------------------------
    def search(self, object_type: Searchable) -> Any:
        """The search call of `object_type` (`do_search`)."""
        apis = {
            "contacts": self.contacts_search,
            "deals": self.deals_search,
            "tickets": self.tickets_search,
            "notes": self.notes_search,
            "tasks": self.tasks_search,
        }
        return apis[object_type].do_search

    @staticmethod
    def search_request(object_type: Searchable, **fields: Any) -> Any:
        return _SEARCH_REQUESTS[object_type](**fields)

    @staticmethod
    def engagement(kind: Literal["note", "task"], properties: dict[str, str], object_id: str, type_id: int) -> Any:
        """A note or task to create, associated with one contact or deal."""
        package = notes if kind == "note" else tasks
        return package.SimplePublicObjectInputForCreate(
            properties=properties,
            associations=[
                package.PublicAssociationsForObject(
                    to=package.PublicObjectId(id=object_id),
                    types=[
                        package.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=type_id)
                    ],
                )
            ],
        )

    @staticmethod
    def deal_update(properties: dict[str, str]) -> Any:
        return deals.SimplePublicObjectInput(properties=properties)

    @staticmethod
    def associations_batch_request(ids: list[str]) -> Any:
        return associations_v4.BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[associations_v4.PublicFetchAssociationsBatchRequest(id=object_id) for object_id in ids]
        )

    @staticmethod
    def contacts_batch_request(ids: list[str], properties: list[str]) -> Any:
        return contacts.BatchReadInputSimplePublicObjectId(
            inputs=[contacts.SimplePublicObjectId(id=contact_id) for contact_id in ids],
            properties=properties,
            properties_with_history=[],
        )

    # --- failures -----------------------------------------------------------------------------
    @staticmethod
    def failure(what: str, exc: Exception, *, write_once: bool, write_recheck_seconds: float) -> IntegrationError:
        """A failed SDK call as our error. `write_once`: a create that must not be repeated after a
        failure that may have reached HubSpot; it asks to be tried again after
        `write_recheck_seconds`, once HubSpot's search shows what it may have created."""
        if isinstance(exc, API_ERRORS):
            details = error_details(exc)
            status = getattr(exc, "status", None) or 0  # 0: the SDK's own wrapping of a TLS failure
            if status == 429:
                headers = getattr(exc, "headers", None)
                wait = parse_retry_after(headers.get("Retry-After") if headers else None)
                if wait is None:
                    wait = DAILY_LIMIT_WAIT if details.get("policy") == "DAILY" else RATE_LIMIT_FALLBACK_WAIT
                return RateLimited(
                    f"{what}: 429 rate limited ({details.get('policy', 'unknown policy')})",
                    system=SYSTEM,
                    retry_after=wait,
                    details=details,
                )
            if status >= 500 or status == 0:
                return _maybe_applied(what, f"HTTP {status}", details, write_once, write_recheck_seconds)
            return PermanentError(
                f"{what}: HTTP {status}: {details.get('message', 'refused')}", system=SYSTEM, details=details
            )
        if isinstance(exc, ConnectTimeoutError):  # also NewConnectionError: HubSpot never saw it
            return TransientError(f"{what}: cannot connect ({type(exc).__name__})", system=SYSTEM)
        if isinstance(exc, Urllib3Error):  # a read timeout or a dropped connection
            return _maybe_applied(what, type(exc).__name__, {}, write_once, write_recheck_seconds)
        if write_once:  # the answer could not be read: the object may exist
            return OutcomeUnknown(f"{what}: unreadable answer ({type(exc).__name__})", system=SYSTEM)
        return PermanentError(f"{what}: unexpected answer ({type(exc).__name__}: {exc})", system=SYSTEM)

    def close(self) -> None:
        for api in self._built:
            api.api_client.rest_client.pool_manager.clear()
            api.api_client.close()
        self._built.clear()


def _maybe_applied(
    what: str, why: str, details: dict[str, Any], write_once: bool, recheck_seconds: float
) -> TransientError:
    if not write_once:
        return TransientError(f"{what}: {why}", system=SYSTEM, details=details)
    return TransientError(
        f"{what}: {why}; it may have been created, so the next attempt first looks for it "
        f"(in {recheck_seconds:g} s, once HubSpot's search has caught up)",
        system=SYSTEM,
        retry_after=recheck_seconds,
        details={**details, "may_have_applied": True},
    )
