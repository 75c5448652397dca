"""Admin for redaction rules and the (read-only, very large) audit log."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from audit.models import AuditEvent, RedactionRule
from audit.redaction import compile_rules
from audit.selectors import audit_backlog, audit_dead_letter_list
from audit.services import (
    audit_dead_letters_replay,
    redaction_rule_create,
    redaction_rule_delete,
    redaction_rule_update,
)
from gateway_project.lib.admin_writes import adopt, stored, values_of
from gateway_project.lib.paginator import EstimatedCountPaginator

_DEAD_LETTERS_SHOWN = 200
_PRE_STYLE = (
    "white-space: pre-wrap; word-break: break-word; max-height: 40em; overflow: auto; "
    "margin: 0; padding: 6px 8px; background: var(--darkened-bg); border-radius: 4px;"
)


# --- Redaction rules ---------------------------------------------------------------------------


class RuleTestForm(forms.Form):
    sample = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text="Nothing typed here is stored.",
    )


class RuleListForm(forms.ModelForm):
    """One row of the editable rule list, which shows only `enabled` and `position`.

    RedactionRule.clean() still checks the whole rule, and Django raises ValueError (a 500)
    when a model error names a field the form lacks, e.g. a stored pattern that today's
    safety check refuses. Such errors are shown above the row instead.
    """

    def add_error(self, field: str | None, error: Any) -> None:
        if field is None and isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            kept: dict[str, list[ValidationError]] = {}
            for name, errors in error.error_dict.items():
                if name == NON_FIELD_ERRORS or name in self.fields:
                    kept.setdefault(name, []).extend(errors)
                else:
                    kept.setdefault(NON_FIELD_ERRORS, []).extend(
                        ValidationError(f"{name}: {message}")
                        for message in ValidationError(errors).messages
                    )
            error = ValidationError(kept)
        super().add_error(field, error)


@admin.register(RedactionRule)
class RedactionRuleAdmin(admin.ModelAdmin):
    """Saved, from the change form and from the editable list alike, and deleted through
    audit.services (`redaction_rule_create`/`_update`/`_delete`, by id: the form may rename
    a rule, which redaction_rule_upsert's name key would not follow). The form has already
    run RedactionRule.clean(), which the service runs again; post_save invalidates the
    proxy's snapshot."""

    list_display = ("name", "detector", "scope", "replacement", "enabled", "position")
    list_display_links = ("name",)
    list_editable = ("enabled", "position")
    list_filter = ("detector", "scope", "enabled")
    search_fields = ("name", "pattern")
    ordering = ("position", "id")

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> type[forms.ModelForm]:
        return super().get_changelist_form(request, form=RuleListForm, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: RedactionRule, form: forms.Form, change: bool
    ) -> None:
        values = values_of(obj, form.fields)
        if change:
            adopt(obj, redaction_rule_update(rule=stored(obj), **values).instance)
        else:
            adopt(obj, redaction_rule_create(**values))

    def delete_model(self, request: HttpRequest, obj: RedactionRule) -> None:
        redaction_rule_delete(rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RedactionRule]) -> None:
        for rule in queryset:
            redaction_rule_delete(rule=rule)

    def get_urls(self) -> list[URLPattern]:
        test = path(
            "<path:object_id>/test/",
            self.admin_site.admin_view(self.test_view),
            name="audit_redactionrule_test",
        )
        return [test, *super().get_urls()]

    def test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        rule = get_object_or_404(RedactionRule, pk=object_id)
        if not self.has_view_or_change_permission(request, rule):
            raise PermissionDenied
        form = RuleTestForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            # The same compiler the gateway uses, on this one rule (enabled or not), so what
            # the operator sees is what the audit copy would get.
            result = compile_rules([rule]).redact_for_audit(form.cleaned_data["sample"])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Test rule “{rule.name}”",
            "rule": rule,
            "form": form,
            "result": result,
            "change_url": reverse("admin:audit_redactionrule_change", args=[rule.pk]),
        }
        return TemplateResponse(request, "admin/audit/redactionrule/test.html", context)


# --- Audit log ---------------------------------------------------------------------------------


def _pretty_json(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre style="{}">{}</pre>', _PRE_STYLE, text)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return json.dumps(content, indent=2, ensure_ascii=False, default=str)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
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
    list_filter = ("outcome", "stream", "fallback_used")
    # Facet counts would run one COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    date_hierarchy = "created_at"
    # Each row carries the tenant's slug, so the list never needs to join the tenant table.
    list_select_related = ()
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    search_fields = ("request_id", "key_prefix")
    search_help_text = "An exact request id or key prefix (e.g. gwk_AbCd1234)."
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

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
        # Exact, case-sensitive matches: the default icontains/iexact lookups wrap the
        # column in UPPER() and cannot use the request_id index on a table this size.
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(request_id=term) | Q(key_prefix=term)), False

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
