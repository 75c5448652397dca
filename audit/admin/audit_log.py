"""The audit log's admin: strictly read-only, and fast on a table of millions of rows.

- No full count: the paginator (gateway_project/lib/paginator.py) takes the planner's
  estimate or stops counting at a cap, and `show_full_result_count` is off.
- Search is an exact request id or key prefix (no icontains, which cannot use an index).
- Tenant, route, status and time are typed in the form above the list and each narrows
  through an index (audit/admin/filters.py); no filter lists its choices with a DISTINCT
  over the table, and there is no date hierarchy (it does exactly that).
- Only the time column sorts: sorting millions of rows by cost or model reads them all.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from audit.admin.filters import SEARCH_FILTERS
from audit.models import AuditEvent
from audit.selectors import audit_backlog, audit_dead_letter_list, audit_search
from audit.services import audit_dead_letters_replay
from gateway_project.lib.admin_writes import ReadOnlyAdmin
from gateway_project.lib.paginator import EstimatedCountPaginator

_DEAD_LETTERS_SHOWN = 200
_PRE_STYLE = (
    "white-space: pre-wrap; word-break: break-word; max-height: 40em; overflow: auto; "
    "margin: 0; padding: 6px 8px; background: var(--darkened-bg); border-radius: 4px;"
)


def _pretty_json(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre style="{}">{}</pre>', _PRE_STYLE, text)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return json.dumps(content, indent=2, ensure_ascii=False, default=str)


class TimeOrderedChangeList(ChangeList):
    """Sorted by time only, whatever the URL asks (`?o=`): sorting millions of rows by cost
    or model reads them all; by time, the index hands them over in order."""

    def get_ordering_field(self, field_name: Any) -> Any:
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        ordering = super().get_ordering(request, queryset)
        if not any(str(field).lstrip("-") == "created_at" for field in ordering):
            return ["-created_at", "-pk"]
        return ordering


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Strictly read-only: rows are written by the gateway and kept as evidence."""

    list_display = (
        "when",
        "tenant_name",
        "route",
        "provider",
        "model",
        "outcome",
        "status",
        "latency",
        "tokens",
        "cost",
    )
    list_filter = (*SEARCH_FILTERS, "outcome", "stream", "fallback_used")
    # Facet counts would run one COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    sortable_by = ("when",)
    # Each row carries the tenant's slug, so the list never needs to join the tenant table.
    list_select_related = ()
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    search_fields = ("request_id", "key_prefix")
    search_help_text = "An exact request id (req_…) or key prefix (gwk_…)."
    actions = None

    fieldsets = (
        (
            "Request",
            {
                "fields": (
                    "request_id",
                    "created_at",
                    "tenant_link",
                    "key_prefix",
                    "route",
                    "requested_model",
                    "stream",
                    "config_version_link",
                )
            },
        ),
        (
            "Upstream",
            {"fields": ("provider", "model", "fallback_used", "attempts", "attempt_log_pretty")},
        ),
        (
            "Outcome",
            {
                "fields": (
                    "outcome",
                    "status_code",
                    "error_type",
                    "error_message",
                    "latency",
                    "ttft",
                )
            },
        ),
        ("Usage", {"fields": ("prompt_tokens", "completion_tokens", "total_tokens", "cost")}),
        ("Prompt (after redaction)", {"fields": ("prompt_pretty",)}),
        ("Response (after redaction)", {"fields": ("response_pretty",)}),
        ("Metadata", {"fields": ("metadata_pretty",)}),
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TimeOrderedChangeList

    # --- dead letters: rows the database refused, kept in a file (audit/spool.py) ---

    def get_urls(self) -> list[URLPattern]:
        dead_letters = path(
            "dead-letters/",
            self.admin_site.admin_view(self.dead_letters_view),
            name="audit_auditevent_dead_letters",
        )
        return [dead_letters, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        count = audit_backlog().dead_letters
        if count:
            messages.warning(
                request,
                format_html(
                    "{} audit row(s) were refused by the database and are kept in the "
                    'dead-letter file: <a href="{}">review and replay them</a>.',
                    count,
                    reverse("admin:audit_auditevent_dead_letters"),
                ),
            )
        return super().changelist_view(request, extra_context)

    def dead_letters_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        # Replaying inserts audit rows: the model's add permission, which the admin's own
        # add form never offers (has_add_permission above).
        can_replay = request.user.has_perm("audit.add_auditevent")
        if request.method == "POST":
            if not can_replay:
                raise PermissionDenied
            report = audit_dead_letters_replay()
            level = messages.SUCCESS if not report.still_failing else messages.WARNING
            messages.add_message(request, level, f"Dead letters replayed: {report}.")
            return redirect("admin:audit_auditevent_dead_letters")
        backlog = audit_backlog()
        rows = [
            {
                "request_id": row.get("request_id") or row.get("unreadable", "?"),
                "created_at": row.get("created_at", ""),
                "tenant": row.get("tenant_slug", ""),
                "outcome": row.get("outcome", ""),
                "status": row.get("status_code", ""),
                "model": row.get("model", ""),
                "cost": row.get("cost_usd", ""),
                "error": (row.get("_dead_letter") or {}).get("error", ""),
                "at": (row.get("_dead_letter") or {}).get("at", ""),
            }
            for row in audit_dead_letter_list(limit=_DEAD_LETTERS_SHOWN)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Audit rows refused by the database",
            "rows": rows,
            "count": backlog.dead_letters,
            "shown": _DEAD_LETTERS_SHOWN,
            "spooled": backlog.spooled,
            "can_replay": can_replay,
        }
        return TemplateResponse(request, "admin/audit/auditevent/dead_letters.html", context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        return audit_search(queryset, term=search_term), False

    # --- columns and detail fields ---

    @admin.display(description="time (UTC)", ordering="created_at")
    def when(self, obj: AuditEvent) -> str:
        # Seconds matter when lining a row up with a client's logs.
        return obj.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="tenant", ordering="tenant_slug")
    def tenant_name(self, obj: AuditEvent) -> str:
        # Not the `tenant` foreign key: that would load one tenant per row.
        return obj.tenant_slug or "—"

    @admin.display(description="status", ordering="status_code")
    def status(self, obj: AuditEvent) -> int:
        return obj.status_code

    @admin.display(description="tokens", ordering="total_tokens")
    def tokens(self, obj: AuditEvent) -> int:
        return obj.total_tokens

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: AuditEvent) -> str:
        return f"{obj.latency_ms} ms"

    @admin.display(description="time to first token")
    def ttft(self, obj: AuditEvent) -> str:
        return f"{obj.ttft_ms} ms" if obj.ttft_ms is not None else "—"

    @admin.display(description="cost (USD)", ordering="cost_usd")
    def cost(self, obj: AuditEvent) -> str:
        return f"${obj.cost_usd:.6f}"

    @admin.display(description="tenant")
    def tenant_link(self, obj: AuditEvent) -> str:
        if obj.tenant_id is None:
            return f"{obj.tenant_slug} (deleted)" if obj.tenant_slug else "—"
        url = reverse("admin:tenants_tenant_change", args=[obj.tenant_id])
        return format_html('<a href="{}">{}</a>', url, obj.tenant_slug or obj.tenant_id)

    @admin.display(description="config version")
    def config_version_link(self, obj: AuditEvent) -> str:
        # By URL name: routing (which owns the versions) sits above audit.
        if not obj.config_version or "/" in obj.config_version:
            return obj.config_version or "—"
        url = reverse("admin:routing_configversion_by_hash", args=[obj.config_version])
        at = urlencode({"at": obj.created_at.isoformat()})
        return format_html(
            '<a id="audit-config-version" href="{}?{}">{}</a>', url, at, obj.config_version
        )

    @admin.display(description="messages")
    def prompt_pretty(self, obj: AuditEvent) -> str:
        messages = obj.prompt if isinstance(obj.prompt, list) else [obj.prompt]
        if not messages:
            return "—"
        rows = []
        for message in messages:
            if not isinstance(message, dict):
                rows.append(("?", _message_text(message)))
                continue
            text = _message_text(message.get("content") or "")
            extras = {k: v for k, v in message.items() if k not in ("role", "content")}
            if extras:
                # Tool calls, tool_call_id, name...: shown as sent, after the text.
                text = f"{text}\n\n{_message_text(extras)}".strip()
            rows.append((str(message.get("role", "?")), text))
        return format_html_join(
            "",
            '<div style="margin-bottom: 8px;"><strong>{}</strong><pre style="{}">{}</pre></div>',
            ((role, _PRE_STYLE, text) for role, text in rows),
        )

    @admin.display(description="response")
    def response_pretty(self, obj: AuditEvent) -> str:
        if not obj.response:
            return "—"
        return format_html('<pre style="{}">{}</pre>', _PRE_STYLE, obj.response)

    @admin.display(description="attempt log")
    def attempt_log_pretty(self, obj: AuditEvent) -> str:
        return _pretty_json(obj.attempt_log) if obj.attempt_log else "—"

    @admin.display(description="metadata")
    def metadata_pretty(self, obj: AuditEvent) -> str:
        return _pretty_json(obj.metadata) if obj.metadata else "—"
