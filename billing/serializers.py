"""What the billing endpoints of the management API answer (billing/rest.py), and the one
body they read. Money leaves as decimal strings, never floats."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.reverse import reverse

from billing.models import ReportExport
from billing.report_exports import KINDS
from billing.reports import GROUP_BY


def _cost(**kwargs: Any) -> serializers.DecimalField:
    """The ledger's precision: 10 places, as the exports write it."""
    return serializers.DecimalField(
        max_digits=30, decimal_places=10, coerce_to_string=True, **kwargs
    )


def _amount(**kwargs: Any) -> serializers.DecimalField:
    """A statement's amount as statement_get computed it, not rounded again here."""
    return serializers.DecimalField(
        max_digits=None, decimal_places=None, coerce_to_string=True, **kwargs
    )


class ReportRowSerializer(serializers.Serializer):
    group = serializers.CharField(
        help_text="The group's label: provider/model, route, key prefix, tags, day or tenant."
    )
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField(help_text="Part of the prompt tokens.")
    reasoning_tokens = serializers.IntegerField(help_text="Part of the completion tokens.")
    total_tokens = serializers.IntegerField()
    cost = _cost(help_text="USD at list prices.")


class ReportTotalSerializer(ReportRowSerializer):
    group = None  # type: ignore[assignment]  # DRF's way to drop an inherited field


class SeriesPointSerializer(serializers.Serializer):
    day = serializers.DateField()
    total_tokens = serializers.IntegerField()
    cost = _cost()


class UsageReportSerializer(serializers.Serializer):
    """One page of a report's rows, with the whole report's total and daily series."""

    count = serializers.IntegerField(help_text="Rows in the whole report.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    query = serializers.DictField(child=serializers.CharField())
    as_of = serializers.DateTimeField(allow_null=True, help_text="When the roll-ups were built.")
    results = ReportRowSerializer(many=True)
    total = ReportTotalSerializer()
    series = SeriesPointSerializer(many=True)


class StatementLineSerializer(serializers.Serializer):
    adjustment_of = serializers.CharField(help_text='"" for this month, else the closed month.')
    provider = serializers.CharField()
    model = serializers.CharField()
    token_kind = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = _amount(help_text="USD per 1M tokens.")
    amount_usd = _amount()


class StatementSerializer(serializers.Serializer):
    number = serializers.CharField(allow_null=True, help_text="null: a draft of an open month.")
    tenant_slug = serializers.CharField()
    tenant_name = serializers.CharField()
    month = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    time_zone = serializers.CharField()
    currency = serializers.CharField()
    exchange_rate = _amount(allow_null=True)
    markup_percent = _amount()
    lines = StatementLineSerializer(many=True)
    subtotal_usd = _amount()
    adjustments_usd = _amount()
    markup_usd = _amount()
    total_usd = _amount()
    total = _amount(allow_null=True, help_text="In `currency`.")
    closed_at = serializers.DateTimeField(allow_null=True)


class ReportExportSerializer(serializers.ModelSerializer):
    download = serializers.SerializerMethodField()

    class Meta:
        model = ReportExport
        fields = [
            "id",
            "parameters",
            "format",
            "status",
            "progress",
            "error",
            "created_at",
            "finished_at",
            "download",
        ]
        read_only_fields = fields

    def get_download(self, export: ReportExport) -> str | None:
        """The file's URL once it is built."""
        if export.status != ReportExport.Status.DONE:
            return None
        return reverse(
            "management:billing-export-download",
            kwargs={"pk": export.id},
            request=self.context.get("request"),
        )


class ReportExportPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ReportExportSerializer(many=True)


class ReportExportStartSerializer(serializers.Serializer):
    """A report to build in the background: the usage endpoint's parameters, the kind of
    file and its format. Checked by billing.report_exports.report_export_start."""

    kind = serializers.ChoiceField(choices=list(KINDS), default="report")
    format = serializers.ChoiceField(choices=["csv", "xlsx", "json"])
    tenant = serializers.CharField(required=False, allow_blank=True)
    month = serializers.CharField(required=False, allow_blank=True, help_text="YYYY-MM")
    start = serializers.CharField(required=False, allow_blank=True, help_text="YYYY-MM-DD")
    end = serializers.CharField(required=False, allow_blank=True, help_text="YYYY-MM-DD")
    group_by = serializers.ChoiceField(choices=list(GROUP_BY), default="model")
    tag_key = serializers.CharField(required=False, allow_blank=True)

    def parameters(self) -> dict[str, Any]:
        return {
            name: str(value)
            for name, value in self.validated_data.items()
            if name != "format" and value is not None
        }
