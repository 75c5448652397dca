"""Admin for budgets, rate limits and the budget alerts they raised.

The models' clean() checks that the scope and the related object agree; the form runs it,
so those errors show next to the field they are about. Every save and delete then goes
through billing.services (`budget_create`/`_update`/`_delete`, `rate_limit_create`/
`_update`/`_delete`), the write path the importer uses: validated again there, written
only when a value differs, and post_save invalidates the proxy's snapshot.

A budget's current spend is read from the ledger (`billing.selectors.budget_status`), one
aggregate query per budget shown. That is fine for a list of budgets, which is short
(a few per tenant) and paginated below; it is not the live Redis counter the proxy
enforces, which also holds the reservations of requests still in flight.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Field, QuerySet
from django.http import HttpRequest

from billing import terms_admin  # noqa: F401  (registers the commercial terms' admin)
from billing.models import Budget, BudgetAlert, RateLimit
from billing.selectors import BudgetOverruns, BudgetStatus, budget_overruns, budget_status
from billing.services import (
    BudgetSpec,
    RateLimitSpec,
    Subject,
    budget_create,
    budget_delete,
    budget_thresholds_validate,
    budget_update,
    rate_limit_create,
    rate_limit_delete,
    rate_limit_update,
)
from gateway_project.lib.admin_writes import ReadOnlyAdmin, adopt, stored

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts

_SCOPE_FIELDSET: tuple[str, _FieldOpts] = (
    "Applies to",
    {
        "fields": ("scope", "tenant", "api_key", "route"),
        "description": "Pick the scope, then fill in only the matching object.",
    },
)


def _money(value: Decimal) -> str:
    """ "$0.123400" -> "$0.1234", "$5" -> "$5.00": cents at least, no trailing zeros."""
    text = format(value.quantize(Decimal("0.000001")).normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def _moment(value: datetime | None) -> str:
    # Periods are calendar periods in GATEWAY_BUDGET_TIMEZONE; say which.
    return "never (total budget)" if value is None else f"{value:%Y-%m-%d %H:%M} {value.tzname()}"


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
            formfield.widget.can_add_related = False
        return formfield

    @admin.display(description="applies to", ordering="scope")
    def applies_to(self, obj: Budget | RateLimit) -> str:
        return obj.subject


class ThresholdsField(forms.CharField):
    """Alert thresholds typed as "50, 80, 100", stored as a sorted JSON list of ints."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[int]:  # type: ignore[override]  # a list, not the str the base returns
        if isinstance(value, list | tuple):
            items = list(value)
        else:
            text = (super().to_python(value) or "").replace("%", "")
            items = []
            for part in (part.strip() for part in text.split(",")):
                if not part:
                    continue
                try:
                    items.append(int(part))
                except ValueError:
                    raise ValidationError(
                        f"{part!r} is not a whole number.", code="invalid_threshold"
                    ) from None
        return budget_thresholds_validate(thresholds=items)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(initial or []) != self.to_python(data)
        except ValidationError:
            return True


class BudgetForm(forms.ModelForm):
    alert_thresholds = ThresholdsField(
        required=False,
        widget=forms.TextInput(attrs={"size": 30, "placeholder": "e.g. 50, 80, 100"}),
        help_text="Comma-separated percentages of the limit (1 to 100) at which an alert is "
        "recorded, and e-mailed when e-mail is configured. Leave empty for no alerts.",
    )

    class Meta:
        model = Budget
        fields = (
            "scope", "tenant", "api_key", "route", "period", "max_tokens", "max_cost_usd",
            "hard", "enabled", "alert_thresholds",
        )  # fmt: skip


@admin.register(Budget)
class BudgetAdmin(ScopedLimitAdmin):
    form = BudgetForm
    list_display = (
        "applies_to", "period", "max_tokens", "max_cost_usd", "spent", "remaining", "used",
        "overruns", "period_ends", "alerts_at", "hard", "enabled",
    )  # fmt: skip
    list_filter = ("scope", "period", "hard", "enabled")
    # Each row costs one ledger query (see the module docstring); keep pages modest.
    list_per_page = 50
    readonly_fields = ("current_period", "spent", "remaining", "used", "overruns")
    fieldsets = (
        _SCOPE_FIELDSET,
        ("Limit", {"fields": ("period", "max_tokens", "max_cost_usd", "hard", "enabled")}),
        ("Alerts", {"fields": ("alert_thresholds",)}),
    )
    status_fieldset = (
        "Current period",
        {
            "fields": ("current_period", "spent", "remaining", "used", "overruns"),
            "description": "From the audit ledger: requests still in flight are not counted. "
            "Overruns are requests that spent more than their reservation (from the live "
            "counters).",
        },
    )

    def get_fieldsets(self, request: HttpRequest, obj: Budget | None = None) -> Any:
        if obj is None:
            return self.fieldsets
        return (*self.fieldsets, self.status_fieldset)

    def save_model(self, request: HttpRequest, obj: Budget, form: forms.Form, change: bool) -> None:
        subject, spec = Subject.of_limit(obj), BudgetSpec.of(obj)
        if change:
            adopt(obj, budget_update(budget=stored(obj), subject=subject, spec=spec).instance)
        else:
            adopt(obj, budget_create(subject=subject, spec=spec))

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        budget_delete(budget=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            budget_delete(budget=budget)

    @staticmethod
    def status(obj: Budget) -> BudgetStatus:
        # Every column of a row (and every read-only field of the change page) shares one
        # ledger query: the admin hands them all the same instance.
        cached: BudgetStatus | None = getattr(obj, "_budget_status", None)
        if cached is None:
            cached = budget_status(budget=obj)
            obj._budget_status = cached  # type: ignore[attr-defined]  # a per-request cache on the row
        return cached

    @admin.display(description="spent this period")
    def spent(self, obj: Budget) -> str:
        status = self.status(obj)
        return f"{status.spent_tokens:,} tokens · {_money(status.spent_cost)}"

    @admin.display(description="remaining")
    def remaining(self, obj: Budget) -> str:
        status = self.status(obj)
        parts = []
        if status.remaining_tokens is not None:
            parts.append(f"{status.remaining_tokens:,} tokens")
        if status.remaining_cost is not None:
            parts.append(_money(status.remaining_cost))
        return " · ".join(parts) or "—"

    @admin.display(description="used")
    def used(self, obj: Budget) -> str:
        percent = self.status(obj).percent_used
        return "—" if percent is None else f"{percent}%"

    @admin.display(description="past reservation")
    def overruns(self, obj: Budget) -> str:
        cached: BudgetOverruns | bool | None = getattr(obj, "_budget_overruns", False)
        if cached is False:
            cached = budget_overruns(budget=obj)
            obj._budget_overruns = cached  # type: ignore[attr-defined]  # a per-request cache on the row
        if cached is None:
            return "unknown (Redis unreachable)"
        assert isinstance(cached, BudgetOverruns)
        if not cached.requests:
            return "none"
        plural = "s" if cached.requests != 1 else ""
        return (
            f"{cached.requests:,} request{plural}: {cached.tokens:,} tokens · "
            f"{_money(cached.cost)} more than reserved"
        )

    @admin.display(description="period ends")
    def period_ends(self, obj: Budget) -> str:
        return _moment(self.status(obj).period_end)

    @admin.display(description="current period")
    def current_period(self, obj: Budget) -> str:
        status = self.status(obj)
        if status.period_end is None:
            return "all time (total budget)"
        return f"{_moment(status.period_start)} to {_moment(status.period_end)}"

    @admin.display(description="alerts at")
    def alerts_at(self, obj: Budget) -> str:
        return ", ".join(f"{t}%" for t in obj.alert_thresholds or ()) or "none"


@admin.register(RateLimit)
class RateLimitAdmin(ScopedLimitAdmin):
    list_display = ("applies_to", "model_name", "rpm", "tpm", "enabled")
    list_filter = ("scope", "enabled")
    fieldsets = (
        _SCOPE_FIELDSET,
        ("Limit", {"fields": ("model_name", "rpm", "tpm", "enabled")}),
    )

    def save_model(
        self, request: HttpRequest, obj: RateLimit, form: forms.Form, change: bool
    ) -> None:
        subject, spec = Subject.of_limit(obj), RateLimitSpec.of(obj)
        if change:
            result = rate_limit_update(rate_limit=stored(obj), subject=subject, spec=spec)
            adopt(obj, result.instance)
        else:
            adopt(obj, rate_limit_create(subject=subject, spec=spec))

    def delete_model(self, request: HttpRequest, obj: RateLimit) -> None:
        rate_limit_delete(rate_limit=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RateLimit]) -> None:
        for rate_limit in queryset:
            rate_limit_delete(rate_limit=rate_limit)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    """Threshold crossings, recorded by the proxy's settlement: a record, never edited."""

    list_display = (
        "budget",
        "period_key",
        "threshold_percent",
        "spent",
        "created_at",
        "emailed_at",
    )
    list_filter = ("threshold",)
    # Explicit, or the changelist would join only the non-null budget FK and then load each
    # budget's tenant, key or route row by row to print it.
    list_select_related = ("budget__tenant", "budget__api_key", "budget__route__tenant")
    search_fields = ("period_key", "budget__tenant__slug", "budget__route__name")
    date_hierarchy = "created_at"
    fields = (
        "budget", "period_key", "threshold", "spent_tokens", "spent_cost_usd", "created_at",
        "emailed_at",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="threshold", ordering="threshold")
    def threshold_percent(self, obj: BudgetAlert) -> str:
        return f"{obj.threshold}%"

    @admin.display(description="spent")
    def spent(self, obj: BudgetAlert) -> str:
        return f"{obj.spent_tokens:,} tokens · {_money(obj.spent_cost_usd)}"


# Register the price book and the ledger; Usage & billing, statements and roll-ups.
from billing import finance_admin, ledger_admin  # noqa: E402, F401
