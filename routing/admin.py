"""Admin for routes and their ordered upstream targets.

Every save and delete goes through routing.services, the write path the importer and
commands use: `route_create`/`_update`/`_delete` for the route and, row by row from the
inline, `route_target_create`/`_update`/`_delete` (by id: the form may rename the route or
change its owner, which route_upsert's (tenant, name) key would not follow). A change is
validated there and written only when a value differs; post_save invalidates the proxy's
snapshot. RouteForm applies the one rule the model lacks, the semantic threshold's range,
through the validator the services use, so it shows next to its field.

The change list offers the `clear_route_cache` action and links to the response cache's
page (statistics, and clearing it for one tenant or all): both live in routing/cache/admin.py.

The route's page shows each target's circuit state beside it (closed, open, half-open),
read from Redis in one call for all of the route's targets; "unknown" when Redis cannot
be reached.

Configuration versions have their pages in routing/versions/admin.py, registered from here.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.core.validators import MinValueValidator
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, BaseModelFormSet
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.template.backends.base import BaseEngine
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from gateway_project.lib.admin_writes import adopt, save_inline, stored, values_of
from providers.circuit import (
    CLOSED,
    HALF_OPEN,
    BreakerUnavailable,
    CircuitState,
    circuit_states,
    target_key,
)
from routing.cache.admin import PERMISSION as CACHE_PERMISSION
from routing.cache.admin import clear_route_cache
from routing.models import Route, RouteTarget
from routing.selectors import route_list
from routing.services import (
    route_create,
    route_delete,
    route_semantic_threshold_validate,
    route_target_create,
    route_target_delete,
    route_target_update,
    route_update,
)
from routing.versions import admin as _versions_admin  # noqa: F401  (registers its pages)

_SUMMARY_CHARS = 80

# The stock change list plus one object-tools link; a string rather than a file under
# templates/ because it is this small and only ever used here.
_CHANGE_LIST = """{% extends "admin/change_list.html" %}
{% block object-tools-items %}
  {% if cache_url %}<li><a href="{{ cache_url }}" class="viewlink">Response cache</a></li>{% endif %}
  {{ block.super }}
{% endblock %}
"""


@functools.cache
def _change_list_template() -> Any:
    # Compiled on first use, not at import: the admin is imported while apps load.
    engine: BaseEngine = engines["django"]
    return engine.from_string(_CHANGE_LIST)


class RouteForm(forms.ModelForm):
    class Meta:
        model = Route
        fields = ("semantic_threshold", "hedge_after_ms")  # the admin adds the others

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        threshold = self.fields.get("semantic_threshold")
        if threshold is not None:
            threshold.widget.attrs.update(min="0.001", max="1")
        hedge = self.fields.get("hedge_after_ms")
        if isinstance(hedge, forms.IntegerField):
            # 0 would send every request to two targets at once; empty means no hedging.
            hedge.min_value = 1
            hedge.validators.append(MinValueValidator(1))
            hedge.widget.attrs["min"] = 1

    def clean_semantic_threshold(self) -> Decimal | None:
        value = self.cleaned_data.get("semantic_threshold")
        return None if value is None else route_semantic_threshold_validate(value=value)


_TARGET_FIELDS = ("position", "provider_model", "weight", "enabled")


def _route_circuits(route: Route) -> dict[str, CircuitState] | None:
    """The circuit states of every target of `route`, read once per page and kept on the
    route object, which every row of the inline shares; None when Redis is away."""
    if "_circuit_states" in route.__dict__:
        return cast("dict[str, CircuitState] | None", route.__dict__["_circuit_states"])
    keys = [
        target_key(provider, model)
        for provider, model in RouteTarget.objects.filter(route=route).values_list(
            "provider_model__provider__name", "provider_model__name"
        )
    ]
    try:
        states = {state.key: state for state in circuit_states(keys=keys)} if keys else {}
    except BreakerUnavailable:
        states = None
    route._circuit_states = states  # type: ignore[attr-defined]  # a per-request cache on the row
    return states


def _circuit_cell(target: RouteTarget, state: CircuitState | None) -> SafeString:
    if state is None:
        name, text = "unknown", "unknown (Redis unreachable)"
    elif state.state == CLOSED:
        failures = state.consecutive_failures
        name = "closed"
        text = (
            f"closed ({failures} recent failure{'s' if failures != 1 else ''})"
            if failures
            else "closed"
        )
    elif state.state == HALF_OPEN:
        name, text = "half-open", "half-open (probing)" if state.probe_in_flight else "half-open"
    else:
        when = f"{state.next_probe_at:%H:%M:%S} UTC" if state.next_probe_at else "?"
        name, text = "open", f"open until {when}"
    return format_html(
        '<span id="circuit-state-{}" class="circuit-state circuit-{}" data-state="{}">{}</span>',
        target.pk,
        name,
        name,
        text,
    )


class RouteTargetFormSet(BaseInlineFormSet):
    def add_fields(self, form: Any, index: int | None) -> None:
        super().add_fields(form, index)
        if form.instance.pk is not None:
            # Every saved row's route is this one: shared, so the circuit states read for
            # one row serve them all, and no row loads its route again.
            form.instance.route = self.instance


class RouteTargetInline(admin.TabularInline):
    model = RouteTarget
    formset = RouteTargetFormSet
    fields = (*_TARGET_FIELDS, "circuit")
    readonly_fields = ("circuit",)
    autocomplete_fields = ("provider_model",)
    ordering = ("position", "id")

    def get_extra(self, request: HttpRequest, obj: Route | None = None, **kwargs: object) -> int:
        # A new route usually gets a primary and a fallback; an existing one has its rows.
        return 2 if obj is None else 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[RouteTarget]:
        return super().get_queryset(request).select_related("provider_model__provider")

    @admin.display(description="circuit")
    def circuit(self, obj: RouteTarget) -> str:
        if obj.pk is None:  # a blank row for a new target
            return "—"
        states = _route_circuits(obj.route)
        key = target_key(obj.provider_model.provider.name, obj.provider_model.name)
        return _circuit_cell(obj, None if states is None else states.get(key))


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
    form = RouteForm
    fieldsets = (
        (None, {"fields": ("name", "tenant", "strategy", "description", "default_max_tokens")}),
        (
            "Caching and hedging",
            {
                "fields": (
                    "cache_ttl_seconds",
                    ("semantic_cache", "semantic_threshold"),
                    "hedge_after_ms",
                ),
                "description": "A TTL of 0 turns the response cache off for this route. The "
                "semantic cache also answers prompts at least this similar (above 0, at most "
                "1) to a cached one. Leave the hedge delay empty for no hedging.",
            },
        ),
        (None, {"fields": ("enabled", "updated_at")}),
    )
    readonly_fields = ("updated_at",)
    inlines = (RouteTargetInline,)
    actions = (clear_route_cache,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        # The target summary reads every route's targets: route_list prefetches them.
        return route_list()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if request.user.has_perm(CACHE_PERMISSION):  # what the cache page itself demands
            context["cache_url"] = reverse("cache-clear")
        return super().changelist_view(request, context)

    @property
    def change_list_template(self) -> Any:  # type: ignore[override]  # a property for a class attribute
        # TemplateResponse takes a compiled template as well as a name.
        return _change_list_template()

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Route, inline: InlineModelAdmin, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if obj.pk is None and isinstance(inline, RouteTargetInline):
            # Number the blank rows of a new route 0, 1, ... so the primary is obvious. The
            # POST needs the same initial values, or an untouched row would count as edited.
            kwargs["initial"] = [{"position": index} for index in range(inline.get_extra(request))]
        return kwargs

    def save_model(self, request: HttpRequest, obj: Route, form: forms.Form, change: bool) -> None:
        values = values_of(obj, form.fields)
        if change:
            adopt(obj, route_update(route=stored(obj), **values).instance)
        else:
            adopt(obj, route_create(**values))

    def save_formset(
        self, request: HttpRequest, form: forms.Form, formset: BaseModelFormSet, change: bool
    ) -> None:
        save_inline(
            formset,
            create=lambda row: route_target_create(
                route=row.route, **values_of(row, _TARGET_FIELDS)
            ),
            update=lambda old, row: route_target_update(
                target=old, **values_of(row, _TARGET_FIELDS)
            ),
            delete=lambda row: route_target_delete(target=row),
        )

    def delete_model(self, request: HttpRequest, obj: Route) -> None:
        route_delete(route=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        for route in queryset:
            route_delete(route=route)

    @admin.display(description="owner", ordering="tenant__slug")
    def owner(self, obj: Route) -> str:
        return obj.tenant.slug if obj.tenant is not None else "global"

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
