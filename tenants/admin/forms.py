"""What the tenant and key admin forms share: the request-policy fields and route names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.core.validators import MinValueValidator

from tenants.models import UsagePolicy

POLICY_FIELDSET = (
    "Policy",
    {
        "fields": UsagePolicy.POLICY_FIELDS,
        "classes": ("collapse",),
        "description": "Request limits. Empty means no limit at this level; where the tenant "
        "and a key both set one, the smaller applies.",
    },
)


def policy_of(obj: UsagePolicy) -> dict[str, Any]:
    """The form's policy, as the keyword arguments `tenant_create` and `api_key_issue` take."""
    return {name: getattr(obj, name) for name in UsagePolicy.POLICY_FIELDS}


class PolicyFormMixin(forms.ModelForm):
    """The policy fields as whole numbers from 1: 0 would refuse every request (or, for the
    nesting depth, silently mean "no limit"), which no one means. The config importer
    applies the same rule."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in UsagePolicy.POLICY_FIELDS:
            field = self.fields.get(name)
            if isinstance(field, forms.IntegerField):
                field.min_value = 1
                field.validators.append(MinValueValidator(1))
                field.widget.attrs["min"] = 1


class RouteNamesField(forms.CharField):
    """Route names typed as a comma-separated list, stored as a JSON list of strings."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]  # a list, not the str the base returns
        if isinstance(value, list | tuple):
            items: Iterable[str] = (str(item) for item in value)
        else:
            items = (super().to_python(value) or "").replace("\n", ",").split(",")
        # dict.fromkeys drops repeats but keeps the order the operator typed.
        return list(dict.fromkeys(item.strip() for item in items if item.strip()))

    def has_changed(self, initial: Any, data: Any) -> bool:
        return self.to_python(initial or []) != self.to_python(data)
