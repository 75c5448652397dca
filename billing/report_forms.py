"""The Usage & billing page's filters: a form whose errors show on the page.

The form checks what a browser can get wrong on its own (a tenant that does not exist, a
date that is not one, a grouping not offered); what makes a valid report query (a month
or a range, not both; a range in order) is billing.reports.parse_report_query's to say,
the same function the command and the API call, and its message becomes a form error."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing import reports
from billing.reports import GROUP_BY, ReportQuery, ReportQueryError
from tenants.models import Tenant

GROUP_LABELS = {
    "model": "model",
    "route": "route",
    "key": "API key",
    "tag": "tag",
    "day": "day",
    "tenant": "tenant",
}


def default_filters() -> dict[str, str]:
    """What the page shows when opened without filters: this month (UTC), by model."""
    return {"month": f"{timezone.now():%Y-%m}", "group_by": "model"}


class UsageFilterForm(forms.Form):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("slug"),
        to_field_name="slug",
        required=False,
        empty_label="every tenant",
    )
    month = forms.RegexField(
        regex=r"^[0-9]{4}-(0[1-9]|1[0-2])\Z",
        required=False,
        max_length=7,
        error_messages={"invalid": "Write the month as YYYY-MM, e.g. 2026-11."},
        widget=forms.TextInput(attrs={"placeholder": "YYYY-MM", "size": 8}),
        help_text="A billing month, in each tenant's time zone; or leave it empty and give "
        "a range of days.",
    )
    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    group_by = forms.ChoiceField(
        choices=[(name, GROUP_LABELS.get(name, name)) for name in GROUP_BY],
        initial="model",
        required=False,  # by model
    )
    tag_key = forms.CharField(
        required=False,
        max_length=100,
        label="Tag key",
        help_text="With group by tag: group by this tag's value (else by the whole tag set).",
    )

    query: ReportQuery

    def report_params(self) -> dict[str, str]:
        """The cleaned filters as report parameters (the names parse_report_query, the
        command and the API take), empty ones left out; also the download links' query."""
        data = self.cleaned_data
        values = {
            "tenant": data["tenant"].slug if data.get("tenant") else "",
            "month": data.get("month") or "",
            "start": data["start"].isoformat() if data.get("start") else "",
            "end": data["end"].isoformat() if data.get("end") else "",
            "group_by": data.get("group_by") or "model",
            "tag_key": (data.get("tag_key") or "").strip(),
        }
        return {name: value for name, value in values.items() if value}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        if not (cleaned.get("month") or cleaned.get("start") or cleaned.get("end")):
            raise ValidationError("Choose a month, or a range of days.")
        try:
            self.query = reports.parse_report_query(self.report_params())
        except ReportQueryError as error:
            raise ValidationError(str(error)) from None
        return cleaned


class ReportFileForm(forms.Form):
    """What to build in the background for the page's filters: the report or its ledger
    lines (only for whoever may read the ledger), as CSV or XLSX."""

    kind = forms.ChoiceField(
        label="File of",
        choices=[("report", "this report"), ("lines", "its ledger lines")],
        initial="report",
    )
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("xlsx", "XLSX")], initial="csv")

    def __init__(self, *args: Any, can_export_lines: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not can_export_lines:
            kind = self.fields["kind"]
            assert isinstance(kind, forms.ChoiceField)
            kind.choices = [("report", "this report")]
