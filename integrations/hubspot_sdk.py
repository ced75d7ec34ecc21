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
- Every package has its own ApiException class; `API_ERRORS` holds those of the packages used.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, TypeVar

import hubspot.crm.associations.v4 as associations_v4
import hubspot.crm.contacts as contacts
import hubspot.crm.deals as deals
import hubspot.crm.objects.notes as notes
import hubspot.crm.objects.tasks as tasks
import hubspot.crm.pipelines as pipelines
import hubspot.crm.tickets as tickets
from hubspot import HubSpot
from urllib3.util.retry import Retry

T = TypeVar("T")

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

    def close(self) -> None:
        for api in self._built:
            api.api_client.rest_client.pool_manager.clear()
            api.api_client.close()
        self._built.clear()
