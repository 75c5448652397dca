"""Admin for the price book (add-only: a price is never edited nor deleted) and the usage
ledger (read-only: written by the audit pipeline only). Registered from billing/admin.py."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from billing.models import PriceVersion, UsageLine
from billing.services import price_version_create
from gateway_project.lib.admin_writes import ReadOnlyAdmin
from gateway_project.lib.paginator import EstimatedCountPaginator


@admin.register(PriceVersion)
class PriceVersionAdmin(admin.ModelAdmin):
    list_display = (
        "provider_model",
        "input_per_million",
        "output_per_million",
        "cached_input_per_million",
        "effective_from",
        "created_at",
        "created_by",
    )
    list_select_related = ("provider_model__provider", "created_by")
    list_filter = ("provider_model__provider",)
    raw_id_fields = ("provider_model",)
    fields = (
        "provider_model", "input_per_million", "output_per_million", "cached_input_per_million",
        "effective_from",
    )  # fmt: skip

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Viewing a version opens its page: allowed, but nothing on it can be saved.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: PriceVersion, form: forms.Form, change: bool
    ) -> None:
        version = price_version_create(
            provider_model=obj.provider_model,
            input_per_million=obj.input_per_million,
            output_per_million=obj.output_per_million,
            cached_input_per_million=obj.cached_input_per_million,
            effective_from=obj.effective_from,
            created_by=request.user,
        )
        obj.pk = version.pk


@admin.register(UsageLine)
class UsageLineAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at", "request_id", "tenant_slug", "key_prefix", "route", "model",
        "total_tokens", "cost_usd", "outcome",
    )  # fmt: skip
    search_fields = ("request_id",)
    date_hierarchy = "created_at"
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [field.name for field in UsageLine._meta.fields]
