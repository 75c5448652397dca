"""Admin for upstream providers and the models (with prices) they serve.

Saved by ModelAdmin and its inline formset, not provider_upsert / provider_model_upsert:
those are keyed by name, which these forms may change. The forms run each model's
full_clean() and save through the model, so the rules are the services' and post_save
still invalidates the proxy's snapshot.
"""

from __future__ import annotations

import os

from django.contrib import admin
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from providers.models import Provider, ProviderModel


class ProviderModelInline(admin.TabularInline):
    model = ProviderModel
    fields = ("name", "input_per_million", "output_per_million", "context_window")
    ordering = ("name",)
    extra = 0


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "base_url",
        "api_key_env",
        "secret_present",
        "model_count",
        "enabled",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url")
    readonly_fields = ("secret_present", "updated_at")
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
        ("Stub provider", {"fields": ("stub_delay_ms",), "classes": ("collapse",)}),
        (None, {"fields": ("updated_at",)}),
    )
    inlines = (ProviderModelInline,)
    # Provider endpoints are https; also silences Django 5's http-default deprecation.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        return super().get_queryset(request).annotate(model_total=Count("models"))

    @admin.display(description="secret set here?", boolean=True)
    def secret_present(self, obj: Provider) -> bool | None:
        # Only this admin process's environment: the gateway workers may differ, which is
        # why this reads "here". The value itself never leaves os.environ.
        if not obj.api_key_env:
            return None
        return bool(os.environ.get(obj.api_key_env))

    @admin.display(description="models", ordering="model_total")
    def model_count(self, obj: Provider) -> int:
        return obj.model_total  # type: ignore[attr-defined]


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderModel]:
        # __str__ names the provider, and the autocomplete view renders it for every hit.
        return super().get_queryset(request).select_related("provider")
