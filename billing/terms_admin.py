"""Admin for commercial terms: a tenant's terms, its price overrides, exchange rates.

Registered from billing/admin.py. Every save and delete goes through billing.terms
(`tenant_terms_set`/`_delete`, `price_override_set`/`_delete`, `exchange_rate_fix`), the
one write path for them. Which tenant or model a row is about is fixed once it exists:
moving terms to another tenant is deleting them and setting the other's.

An exchange rate is fixed for good: the admin adds one and shows it read-only after.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from billing.models import ExchangeRate, PriceOverride, TenantTerms
from billing.terms_services import (
    exchange_rate_fix,
    price_override_delete,
    price_override_set,
    tenant_terms_delete,
    tenant_terms_set,
)
from gateway_project.lib.admin_writes import adopt, values_of

_PRICES = ("input_per_million", "output_per_million", "cached_input_per_million")


class _CurrencyField(forms.CharField):
    def to_python(self, value: Any) -> str:
        return (super().to_python(value) or "").strip().upper()


class TenantTermsForm(forms.ModelForm):
    currency = _CurrencyField(max_length=3, help_text="ISO 4217 code, e.g. USD, EUR, JPY.")

    class Meta:
        model = TenantTerms
        fields = ("tenant", "markup_percent", "currency", "time_zone")


class _FixedOwnerAdmin(admin.ModelAdmin):
    """Who a row is about is chosen when it is added, and read-only after."""

    owner_fields: tuple[str, ...] = ()

    def get_readonly_fields(
        self, request: HttpRequest, obj: Model | None = None
    ) -> tuple[str, ...]:
        fixed = self.owner_fields if obj is not None else ()
        return (*super().get_readonly_fields(request, obj), *fixed)


@admin.register(TenantTerms)
class TenantTermsAdmin(_FixedOwnerAdmin):
    form = TenantTermsForm
    owner_fields = ("tenant",)
    list_display = ("tenant", "markup_percent", "currency", "time_zone", "updated_at")
    list_filter = ("currency",)
    list_select_related = ("tenant",)
    search_fields = ("tenant__slug", "tenant__name")
    autocomplete_fields = ("tenant",)

    def save_model(
        self, request: HttpRequest, obj: TenantTerms, form: forms.Form, change: bool
    ) -> None:
        values = values_of(obj, ("markup_percent", "currency", "time_zone"))
        adopt(obj, tenant_terms_set(tenant=obj.tenant, **values).instance)

    def delete_model(self, request: HttpRequest, obj: TenantTerms) -> None:
        tenant_terms_delete(terms=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TenantTerms]) -> None:
        for terms in queryset:
            tenant_terms_delete(terms=terms)


@admin.register(PriceOverride)
class PriceOverrideAdmin(_FixedOwnerAdmin):
    owner_fields = ("tenant", "provider_model")
    fields = ("tenant", "provider_model", *_PRICES)
    list_display = ("tenant", "provider_model", *_PRICES, "updated_at")
    list_select_related = ("tenant", "provider_model__provider")
    search_fields = ("tenant__slug", "provider_model__name", "provider_model__provider__name")
    autocomplete_fields = ("tenant", "provider_model")

    def save_model(
        self, request: HttpRequest, obj: PriceOverride, form: forms.Form, change: bool
    ) -> None:
        saved = price_override_set(
            tenant=obj.tenant, provider_model=obj.provider_model, **values_of(obj, _PRICES)
        )
        adopt(obj, saved.instance)

    def delete_model(self, request: HttpRequest, obj: PriceOverride) -> None:
        price_override_delete(override=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PriceOverride]) -> None:
        for override in queryset:
            price_override_delete(override=override)


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    fields = ("currency", "month", "rate")
    list_display = ("month", "currency", "rate", "fixed_at")
    list_filter = ("currency",)
    search_fields = ("month", "currency")

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # fixed per closed period: a saved rate is shown read-only

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: ExchangeRate, form: forms.Form, change: bool
    ) -> None:
        adopt(
            obj, exchange_rate_fix(currency=obj.currency, month=obj.month, rate=obj.rate).instance
        )
