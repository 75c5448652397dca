"""Admin for budgets and rate limits.

The models' clean() checks that the scope and the related object agree; ModelAdmin runs
it through the form, so those errors show next to the field they are about. Saves stay
ModelAdmin's: budget_create / rate_limit_create are exactly that full_clean() and model
save (so post_save fires), and there is no update service to share.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Field
from django.http import HttpRequest

from billing.models import Budget, RateLimit

_SCOPE_FIELDSET = (
    "Applies to",
    {
        "fields": ("scope", "tenant", "api_key", "route"),
        "description": "Pick the scope, then fill in only the matching object.",
    },
)


class ScopedLimitAdmin(admin.ModelAdmin):
    list_select_related = ("tenant", "api_key", "route__tenant")
    autocomplete_fields = ("tenant", "api_key", "route")
    search_fields = ("tenant__slug", "api_key__prefix", "api_key__name", "route__name")

    def formfield_for_dbfield(
        self, db_field: Field, request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "api_key" and formfield is not None:
            # Issuing a key from the "+" popup would close the popup on the one page that
            # shows the plaintext; keys are issued from their own page.
            formfield.widget.can_add_related = False  # type: ignore[attr-defined]
        return formfield

    @admin.display(description="applies to", ordering="scope")
    def applies_to(self, obj: Budget | RateLimit) -> str:
        return obj.subject


@admin.register(Budget)
class BudgetAdmin(ScopedLimitAdmin):
    list_display = ("applies_to", "period", "max_tokens", "max_cost_usd", "hard", "enabled")
    list_filter = ("scope", "period", "hard", "enabled")
    fieldsets = (
        _SCOPE_FIELDSET,
        ("Limit", {"fields": ("period", "max_tokens", "max_cost_usd", "hard", "enabled")}),
    )


@admin.register(RateLimit)
class RateLimitAdmin(ScopedLimitAdmin):
    list_display = ("applies_to", "model_name", "rpm", "tpm", "enabled")
    list_filter = ("scope", "enabled")
    fieldsets = (
        _SCOPE_FIELDSET,
        ("Limit", {"fields": ("model_name", "rpm", "tpm", "enabled")}),
    )
