"""The audit log's search fields: tenant, route, status and time, each a list filter.

Every one of them narrows the query through an index of audit_auditevent (migration
0005): a tenant by its id (`audit_tenant_time`, with a status `audit_tenant_status_time`),
a route by its ids (`audit_route_time`), a status alone (`audit_status_time`), a time
range (`created_at`). None of them lists its choices from the audit table itself, as
Django's field filters do with a SELECT DISTINCT over every row: a tenant or a route is
typed, and looked up in its own small table.

They are list filters so the changelist accepts their parameters; the form above the list
(templates/admin/audit/auditevent/search_form.html) is where they are typed. A value that
cannot be understood says why and matches nothing, rather than silently matching all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.models import AuditEvent
from tenants.models import Tenant

_RELATIVE = re.compile(r"\s*(\d{1,4})\s*([mhd])\s*\Z")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_STATUS_CLASS = re.compile(r"\s*([1-5])xx\s*\Z", re.IGNORECASE)


class TypedFilter(admin.SimpleListFilter):
    """A filter whose value is typed rather than picked from a list drawn from the table."""

    # Quick choices offered in the sidebar, besides "All" and the typed value.
    quick: tuple[tuple[str, str], ...] = ()

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return self.quick

    def has_output(self) -> bool:
        # Always: the changelist applies only the filters that have output.
        return True

    def choices(self, changelist: Any) -> Iterator[Any]:
        value = self.value()
        yield {
            "selected": value is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
        }
        quick = dict(self.quick)
        for lookup, title in self.quick:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }
        if value is not None and value not in quick:
            yield {
                "selected": True,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": value,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        try:
            return self.narrow(queryset, value)
        except ValueError as exc:
            messages.error(request, str(exc))
            return queryset.none()

    def narrow(self, queryset: QuerySet[AuditEvent], value: str) -> QuerySet[AuditEvent]:
        raise NotImplementedError


class TenantFilter(TypedFilter):
    title = "tenant"
    parameter_name = "tenant"

    def narrow(self, queryset: QuerySet[AuditEvent], value: str) -> QuerySet[AuditEvent]:
        # By id, the indexed column; a deleted tenant's rows keep only its slug, and are
        # found through their request id or time instead.
        tenant_id = Tenant.objects.filter(slug=value).values_list("id", flat=True).first()
        if tenant_id is None:
            raise ValueError(f"There is no tenant {value!r} (type its slug).")
        return queryset.filter(tenant_id=tenant_id)


class RouteFilter(TypedFilter):
    title = "route"
    parameter_name = "route"

    def narrow(self, queryset: QuerySet[AuditEvent], value: str) -> QuerySet[AuditEvent]:
        # Routes live above this app: a lazy model reference, not an import. A name may be
        # a global route's and several tenants' own, hence ids.
        route_model = apps.get_model("routing", "Route")
        ids = list(route_model.objects.filter(name=value).values_list("id", flat=True))
        if not ids:
            raise ValueError(f"There is no route {value!r}.")
        return queryset.filter(route_id__in=ids)


def parse_status(value: str) -> tuple[int, int]:
    """ "429" -> (429, 430), "5xx" -> (500, 600): the half-open range of status codes."""
    match = _STATUS_CLASS.match(value)
    if match:
        low = int(match.group(1)) * 100
        return low, low + 100
    if value.strip().isdigit() and 100 <= int(value) <= 599:
        code = int(value)
        return code, code + 1
    raise ValueError(f"A status is a code such as 429 or a class such as 5xx, not {value!r}.")


class StatusFilter(TypedFilter):
    title = "status"
    parameter_name = "status"
    quick = (("2xx", "2xx"), ("4xx", "4xx"), ("429", "429"), ("5xx", "5xx"))

    def narrow(self, queryset: QuerySet[AuditEvent], value: str) -> QuerySet[AuditEvent]:
        low, high = parse_status(value)
        if high == low + 1:
            return queryset.filter(status_code=low)
        return queryset.filter(status_code__gte=low, status_code__lt=high)


def parse_moment(value: str, *, now: datetime | None = None) -> datetime:
    """A point in time from what an operator types: "90m", "24h", "7d" (that long ago),
    "2027-03-01" (midnight), "2027-03-01 14:30" or "2027-03-01T14:30:15" (UTC unless it
    names an offset: the list shows UTC)."""
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return (now or timezone.now()) - timedelta(**{_UNITS[unit]: amount})
    text = value.strip()
    try:
        moment = parse_datetime(text.replace(" ", "T", 1) if " " in text else text)
        if moment is None:
            day = parse_date(text)
            moment = datetime(day.year, day.month, day.day) if day else None
    except ValueError:  # well formed but impossible, e.g. 2027-02-30
        moment = None
    if moment is None:
        raise ValueError(
            f"Not a time: {value[:40]!r}. Write 24h, 7d, 2027-03-01 or 2027-03-01 14:30 (UTC)."
        )
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


class SinceFilter(TypedFilter):
    title = "since"
    parameter_name = "since"
    quick = (("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days"))

    def narrow(self, queryset: QuerySet[AuditEvent], value: str) -> QuerySet[AuditEvent]:
        return queryset.filter(created_at__gte=parse_moment(value))


class UntilFilter(TypedFilter):
    title = "until"
    parameter_name = "until"

    def narrow(self, queryset: QuerySet[AuditEvent], value: str) -> QuerySet[AuditEvent]:
        return queryset.filter(created_at__lt=parse_moment(value))


SEARCH_FILTERS = (TenantFilter, RouteFilter, StatusFilter, SinceFilter, UntilFilter)
