"""Admin for upstream providers and the models (with prices) they serve.

Every save and delete, the inline model rows' included, goes through providers.services
(`provider_create`/`_update`/`_delete`, `provider_model_create`/`_update`/`_delete`), the
write path the importer and commands use: a change is validated there and written only
when a value differs, and post_save invalidates the proxy's snapshot.

The resilience settings (timeouts, retries, the circuit breaker's threshold and
cool-down) are plain fields here; ProviderForm refuses the values the model would store
but the proxy would misread (a 0 timeout means "none set", a 0 threshold means 1).

Circuit states come from Redis (providers.circuit), one call per page: the change list
reads the states of every model on the page at once.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Count, QuerySet
from django.forms import BaseModelFormSet
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from gateway_project.lib.admin_writes import adopt, save_inline, stored, values_of
from providers.circuit import (
    CLOSED,
    HALF_OPEN,
    BreakerUnavailable,
    CircuitState,
    circuit_reset,
    circuit_states,
    target_key,
)
from providers.models import Provider, ProviderModel
from providers.services import (
    provider_create,
    provider_delete,
    provider_model_create,
    provider_model_delete,
    provider_model_update,
    provider_update,
)

UNAVAILABLE = "unknown (Redis unreachable)"


def _keys(provider: Provider) -> list[str]:
    return [target_key(provider.name, pm.name) for pm in provider.models.all()]


def _describe(state: CircuitState) -> str:
    count = state.consecutive_failures
    failures = f"{count} consecutive failure{'' if count == 1 else 's'}"
    if state.state == CLOSED:
        if count or state.window_failures:
            return (
                f"closed ({failures}, {state.window_failures} of the last "
                f"{state.window_attempts} attempts failed)"
            )
        return "closed"
    if state.state == HALF_OPEN:
        probe = "probe out" if state.probe_in_flight else "probe due"
        return f"half-open ({probe}, {failures})"
    when = state.next_probe_at.strftime("%H:%M:%S UTC") if state.next_probe_at else "?"
    return f"open ({failures}, probe at {when})"


def _circuit_lines(provider: Provider, states: dict[str, CircuitState] | None) -> str:
    rows = list(provider.models.all())
    if not rows:
        return "—"
    return format_html_join(
        mark_safe("<br>"),
        "{}: {}",
        (
            (
                pm.name,
                UNAVAILABLE
                if states is None
                else _describe(states[target_key(provider.name, pm.name)]),
            )
            for pm in rows
        ),
    )


def _states_for(keys: list[str]) -> dict[str, CircuitState] | None:
    try:
        return {state.key: state for state in circuit_states(keys=keys)}
    except BreakerUnavailable:
        return None


# Field -> smallest sensible value. The proxy reads an optional timeout of 0 as "not set"
# (so the total timeout would apply) and a failure threshold of 0 as 1.
_MINIMUMS: dict[str, Decimal | int] = {
    "first_byte_timeout_s": Decimal("0.001"),
    "stream_idle_timeout_s": Decimal("0.001"),
    "circuit_failure_threshold": 1,
}


class ProviderForm(forms.ModelForm):
    class Meta:
        model = Provider
        # The admin adds the others from its fieldsets (with its formfield_overrides).
        fields = tuple(_MINIMUMS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, minimum in _MINIMUMS.items():
            field = self.fields.get(name)
            if isinstance(field, forms.DecimalField | forms.IntegerField):
                field.min_value = minimum  # type: ignore[assignment]  # Decimal on a DecimalField
                field.validators.append(MinValueValidator(minimum))
                field.widget.attrs["min"] = minimum


_MODEL_FIELDS = ("name", "input_per_million", "output_per_million", "context_window")

# A model's prices are Finance's: changing one adds a version to the price book (billing
# listens to these saves, billing/price_book.py), so it takes the permission to add one.
# Without it the prices show read-only, and a model added here starts at the defaults (0)
# until Finance prices it. A permission name, not an import: billing sits above us.
_PRICE_FIELDS = ("input_per_million", "output_per_million")
PRICE_PERMISSION = "billing.add_priceversion"


def _price_fields_locked(request: HttpRequest) -> tuple[str, ...]:
    return () if request.user.has_perm(PRICE_PERMISSION) else _PRICE_FIELDS


class ProviderModelInline(admin.TabularInline):
    model = ProviderModel
    fields = _MODEL_FIELDS
    ordering = ("name",)
    extra = 0

    def get_readonly_fields(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        return (*super().get_readonly_fields(request, obj), *_price_fields_locked(request))


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = (
        "name",
        "kind",
        "base_url",
        "api_key_env",
        "secret_present",
        "model_count",
        "circuits",
        "enabled",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url")
    readonly_fields = ("secret_present", "circuits", "updated_at")
    actions = ("reset_circuit",)
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled")}),
        (
            "Connection",
            {
                "fields": (
                    "base_url",
                    "api_key_env",
                    "secret_present",
                    "api_version",
                    "connect_timeout_s",
                    "timeout_s",
                )
            },
        ),
        (
            "Resilience",
            {
                "fields": (
                    ("first_byte_timeout_s", "stream_idle_timeout_s"),
                    "max_retries",
                    ("circuit_failure_threshold", "circuit_cooldown_s"),
                ),
                "description": "Timeouts are in seconds; leave the first-byte and stream-idle "
                "ones empty to use the total timeout. Retries stay on this provider before the "
                "route moves to its next target.",
            },
        ),
        ("Circuit breakers", {"fields": ("circuits",)}),
        ("Stub provider", {"fields": ("stub_delay_ms",), "classes": ("collapse",)}),
        (None, {"fields": ("updated_at",)}),
    )
    inlines = (ProviderModelInline,)
    # Provider endpoints are https; also silences Django 5's http-default deprecation.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        return (
            super()
            .get_queryset(request)
            .annotate(model_total=Count("models"))
            .prefetch_related("models")
        )

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        # One Redis call for the whole page, not one per row.
        providers = list(changelist.result_list)
        states = _states_for([key for provider in providers for key in _keys(provider)])
        for provider in providers:
            provider._circuit_states = states
        return changelist

    @admin.display(description="circuits")
    def circuits(self, obj: Provider) -> str:
        if obj.pk is None:
            return "—"
        if not hasattr(obj, "_circuit_states"):  # the change page: this provider only
            obj._circuit_states = _states_for(_keys(obj))  # type: ignore[attr-defined]  # a per-request cache on the row
        return _circuit_lines(obj, obj._circuit_states)  # type: ignore[attr-defined]  # set just above or by the changelist

    @admin.action(description="Reset circuit (close it for every model of the selected providers)")
    def reset_circuit(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        providers = list(queryset.prefetch_related("models"))
        keys = [key for provider in providers for key in _keys(provider)]
        try:
            circuit_reset(keys=keys)
        except BreakerUnavailable:
            self.message_user(
                request, "Redis is unreachable: no circuit was reset.", messages.ERROR
            )
            return
        for provider in providers:
            self.log_change(request, provider, "Reset circuit.")
        self.message_user(
            request,
            f"Closed {len(keys)} circuit(s) of {len(providers)} provider(s).",
            messages.SUCCESS,
        )

    def save_model(
        self, request: HttpRequest, obj: Provider, form: forms.Form, change: bool
    ) -> None:
        values = values_of(obj, form.fields)
        if change:
            adopt(obj, provider_update(provider=stored(obj), **values).instance)
        else:
            adopt(obj, provider_create(**values))

    def save_formset(
        self, request: HttpRequest, form: forms.Form, formset: BaseModelFormSet, change: bool
    ) -> None:
        save_inline(
            formset,
            create=lambda row: provider_model_create(
                provider=row.provider, **values_of(row, _MODEL_FIELDS)
            ),
            update=lambda old, row: provider_model_update(
                provider_model=old, **values_of(row, _MODEL_FIELDS)
            ),
            delete=lambda row: provider_model_delete(provider_model=row),
        )

    def delete_model(self, request: HttpRequest, obj: Provider) -> None:
        provider_delete(provider=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            provider_delete(provider=provider)

    @admin.display(description="secret set here?", boolean=True)
    def secret_present(self, obj: Provider) -> bool | None:
        # Only this admin process's environment: the gateway workers may differ, which is
        # why this reads "here". The value itself never leaves os.environ.
        if not obj.api_key_env:
            return None
        return bool(os.environ.get(obj.api_key_env))

    @admin.display(description="models", ordering="model_total")
    def model_count(self, obj: Provider) -> int:
        return obj.model_total  # type: ignore[attr-defined]  # annotated by get_queryset


@admin.register(ProviderModel)
class ProviderModelAdmin(admin.ModelAdmin):
    """Registered mainly so route targets can pick a model with autocomplete."""

    list_display = (
        "__str__",
        "provider",
        "input_per_million",
        "output_per_million",
        "context_window",
    )
    list_filter = ("provider",)
    list_select_related = ("provider",)
    search_fields = ("name", "provider__name")
    autocomplete_fields = ("provider",)
    ordering = ("provider__name", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        return (*super().get_readonly_fields(request, obj), *_price_fields_locked(request))

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderModel]:
        # __str__ names the provider, and the autocomplete view renders it for every hit.
        return super().get_queryset(request).select_related("provider")

    def save_model(
        self, request: HttpRequest, obj: ProviderModel, form: forms.Form, change: bool
    ) -> None:
        values = values_of(obj, form.fields)
        if change:
            adopt(obj, provider_model_update(provider_model=stored(obj), **values).instance)
        else:
            adopt(obj, provider_model_create(**values))

    def delete_model(self, request: HttpRequest, obj: ProviderModel) -> None:
        provider_model_delete(provider_model=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ProviderModel]) -> None:
        for provider_model in queryset:
            provider_model_delete(provider_model=provider_model)
