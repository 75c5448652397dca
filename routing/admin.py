"""Admin for routes and their ordered upstream targets.

Saved by ModelAdmin and its inline formset, not route_upsert: that is keyed by (tenant,
name), which this form may change, and the formset already adds, edits and deletes
targets row by row. Both run full_clean() and save through the model, so post_save
invalidates the proxy's snapshot either way.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from routing.models import Route, RouteTarget
from routing.selectors import route_list

_SUMMARY_CHARS = 80


class RouteTargetInline(admin.TabularInline):
    model = RouteTarget
    fields = ("position", "provider_model", "weight", "enabled")
    autocomplete_fields = ("provider_model",)
    ordering = ("position", "id")

    def get_extra(self, request: HttpRequest, obj: Route | None = None, **kwargs: object) -> int:
        # A new route usually gets a primary and a fallback; an existing one has its rows.
        return 2 if obj is None else 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[RouteTarget]:
        return super().get_queryset(request).select_related("provider_model__provider")


class OwnerFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("global", "Global"), ("tenant", "A tenant")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Route]) -> QuerySet[Route]:
        if self.value() == "global":
            return queryset.filter(tenant__isnull=True)
        if self.value() == "tenant":
            return queryset.filter(tenant__isnull=False)
        return queryset


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "strategy", "target_summary", "enabled")
    list_filter = (OwnerFilter, "strategy", "enabled")
    list_select_related = ("tenant",)
    search_fields = ("name", "tenant__slug")
    autocomplete_fields = ("tenant",)
    fields = (
        "name", "tenant", "strategy", "description", "default_max_tokens", "enabled", "updated_at",
    )  # fmt: skip
    readonly_fields = ("updated_at",)
    inlines = (RouteTargetInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        # The target summary reads every route's targets: route_list prefetches them.
        return route_list()

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Route, inline: InlineModelAdmin, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if obj.pk is None and isinstance(inline, RouteTargetInline):
            # Number the blank rows of a new route 0, 1, ... so the primary is obvious. The
            # POST needs the same initial values, or an untouched row would count as edited.
            kwargs["initial"] = [{"position": index} for index in range(inline.get_extra(request))]
        return kwargs

    @admin.display(description="owner", ordering="tenant__slug")
    def owner(self, obj: Route) -> str:
        return obj.tenant.slug if obj.tenant_id else "global"  # type: ignore[union-attr]

    @admin.display(description="targets")
    def target_summary(self, obj: Route) -> str:
        parts = []
        for target in obj.targets.all():
            label = str(target.provider_model)
            if obj.strategy == Route.Strategy.WEIGHTED:
                label += f" (weight {target.weight})"
            if not target.enabled:
                label += " (off)"
            parts.append(label)
        if not parts:
            return "—"
        separator = " → " if obj.strategy == Route.Strategy.FALLBACK else " · "
        return Truncator(separator.join(parts)).chars(_SUMMARY_CHARS)
