"""The tenant admin: created, edited, suspended and deleted through tenants.services.

The keys are listed read-only; they are issued, edited and revoked on their own pages
(tenants/admin/api_key.py).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Model, QuerySet
from django.forms import BaseModelFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from gateway_project.lib.admin_writes import adopt, stored, values_of
from tenants.admin.forms import POLICY_FIELDSET, PolicyFormMixin, RouteNamesField, policy_of
from tenants.models import ApiKey, Tenant, UsagePolicy
from tenants.selectors import api_key_status_q
from tenants.services import (
    api_key_routes_validate,
    tenant_create,
    tenant_delete,
    tenant_set_status,
    tenant_update,
)


class ApiKeyInline(admin.TabularInline):
    """The tenant's keys, for reading only: keys are issued and revoked on their own pages."""

    model = ApiKey
    template = "admin/tenants/tenant/apikey_inline.html"
    fields = ("prefix", "name", "status", "expires_at", "last_used_at", "created_at")
    readonly_fields = fields  # "status" is ApiKey.status
    ordering = ("-created_at",)
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class TenantForm(PolicyFormMixin):
    allowed_routes = RouteNamesField(
        required=False,
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "e.g. chat, chat-fast"}),
        help_text="Comma-separated route names this tenant's keys may call. Leave empty to "
        "allow every route it can see (the global ones and its own).",
    )

    class Meta:
        model = Tenant
        fields = (
            "slug",
            "name",
            "status",
            "metadata",
            "allowed_routes",
            *UsagePolicy.POLICY_FIELDS,
        )

    def clean_allowed_routes(self) -> list[str]:
        names = self.cleaned_data.get("allowed_routes") or []
        if not names:
            return []
        if self.instance.pk is None:
            # Not on the add form: a tenant that does not exist yet owns no routes.
            raise ValidationError("Save the tenant first, then limit its routes.")
        return api_key_routes_validate(tenant=self.instance, allowed_routes=names)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ("slug", "name", "status", "routes", "active_keys", "created_at")
    list_filter = ("status",)
    search_fields = ("slug", "name")
    ordering = ("slug",)
    readonly_fields = ("created_at", "updated_at")
    add_fieldsets = ((None, {"fields": ("slug", "name", "status", "metadata")}), POLICY_FIELDSET)
    change_fieldsets = (
        (None, {"fields": ("slug", "name", "status", "metadata", "allowed_routes")}),
        POLICY_FIELDSET,
        ("Record", {"fields": ("created_at", "updated_at")}),
    )
    inlines = (ApiKeyInline,)
    actions = ("suspend", "activate")

    def get_fieldsets(self, request: HttpRequest, obj: Tenant | None = None) -> Any:
        # Limiting routes needs the tenant's own routes, which a new tenant does not have.
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_inlines(self, request: HttpRequest, obj: Tenant | None) -> Any:
        # A tenant being added has no keys yet, and keys are issued on their own page.
        return self.inlines if obj is not None else ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_key_count=Count(
                    "api_keys", filter=api_key_status_q(ApiKey.Status.ACTIVE, prefix="api_keys__")
                )
            )
        )

    @admin.display(description="allowed routes")
    def routes(self, obj: Tenant) -> str:
        return ", ".join(obj.allowed_routes) if obj.allowed_routes else "all"

    @admin.display(description="active keys", ordering="active_key_count")
    def active_keys(self, obj: Tenant) -> str:
        url = reverse("admin:tenants_apikey_changelist") + f"?tenant__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.active_key_count)  # type: ignore[attr-defined]  # annotated by get_queryset

    def save_model(self, request: HttpRequest, obj: Tenant, form: forms.Form, change: bool) -> None:
        if change:
            # The form checked the route names with the service's own validator.
            adopt(obj, tenant_update(tenant=stored(obj), **values_of(obj, form.fields)).instance)
            return
        created = tenant_create(
            slug=obj.slug,
            name=obj.name,
            status=obj.status,
            metadata=obj.metadata,
            allowed_routes=list(obj.allowed_routes or []),
            **policy_of(obj),
        )
        adopt(obj, created)

    def save_formset(
        self, request: HttpRequest, form: forms.Form, formset: BaseModelFormSet, change: bool
    ) -> None:
        # The key inline is read-only (keys have their own pages): nothing to write, but the
        # admin's history message reads what this sorted out.
        formset.save(commit=False)

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        tenant_delete(tenant=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            tenant_delete(tenant=tenant)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Tenant], status: str) -> int:
        changed = 0
        for tenant in queryset.exclude(status=status):
            tenant_set_status(tenant=tenant, status=status)
            changed += 1
        return changed

    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        changed = self._set_status(request, queryset, Tenant.Status.SUSPENDED)
        self.message_user(request, f"Suspended {changed} tenant(s).", messages.SUCCESS)

    @admin.action(description="Activate selected tenants", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        changed = self._set_status(request, queryset, Tenant.Status.ACTIVE)
        self.message_user(request, f"Activated {changed} tenant(s).", messages.SUCCESS)
