"""Finance's admin: the Usage & billing page, statements (with their printable page and
PDF), the daily roll-ups and report files. Registered from billing/admin.py.

Everything here is read-only: roll-ups are rebuilt from the ledger, statements are
immutable once issued, report files are written by their task. The pages themselves are
billing/views.py, mounted here so they get the admin's login, its navigation and its
URL names (admin:billing_usagereport_changelist, admin:billing_statement_print, ...).
A report file is downloaded from its own URL (admin:billing_reportexport_file), linked
from the page's list of the user's files and from the report files' admin."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.db.models import BooleanField, ExpressionWrapper, Model, Q, QuerySet, Value
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, re_path, reverse
from django.utils.html import format_html

from billing import views
from billing.close_views import CLOSE_PERMISSION, close_month_page
from billing.models import DailyUsage, ReportExport, Statement, StatementLine, UsageReport
from billing.pricing import CURRENCY_MINOR_UNITS
from billing.report_files import download_url, report_file_response
from billing.statement_format import usd
from gateway_project.lib.paginator import EstimatedCountPaginator

_MONTH = r"(?P<month>[^/]+)"  # checked by the view: a bad one is a 404
_TENANT = r"(?P<tenant_slug>[^/]+)"


class ReadOnlyMixin:
    """Shown to whoever may view the model; never added, changed nor deleted here."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(UsageReport)
class UsageReportAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The Usage & billing page in place of a change list; opened by whoever may view the
    roll-ups (the proxy has no permissions of its own)."""

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm(views.REPORT_PERMISSION)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.page), name="billing_usagereport_changelist"),
            re_path(
                r"^(?P<source>usage|lines)\.(?P<fmt>csv|xlsx)$",
                wrap(self.download),
                name="billing_usagereport_download",
            ),
            path("files/build/", wrap(self.build_file), name="billing_usagereport_build"),
        ]

    def _admin_context(self, request: HttpRequest) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts}

    def page(self, request: HttpRequest) -> HttpResponse:
        return views.usage_page(request, admin_context=self._admin_context(request))

    def download(self, request: HttpRequest, source: str, fmt: str) -> HttpResponseBase:
        return views.usage_download(
            request, source=source, fmt=fmt, admin_context=self._admin_context(request)
        )

    def build_file(self, request: HttpRequest) -> HttpResponseBase:
        return views.report_file_build(request, admin_context=self._admin_context(request))


class StatementLineInline(ReadOnlyMixin, admin.TabularInline):
    model = StatementLine
    fields = (
        "position", "adjustment_of", "provider", "model", "price_version_id", "token_kind",
        "quantity", "unit_price", "amount_usd",
    )  # fmt: skip
    readonly_fields = fields
    ordering = ("position",)
    extra = 0
    can_delete = False


def statement_urls(tenant_slug: str, month: str) -> tuple[str, str]:
    """The printable page and the PDF of a tenant's statement of `month`."""
    return (
        reverse("admin:billing_statement_print", args=[tenant_slug, month]),
        reverse("admin:billing_statement_pdf", args=[tenant_slug, month]),
    )


@admin.register(Statement)
class StatementAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "number", "tenant_slug", "month", "total_in_usd", "total_in_currency", "closed_at",
        "documents",
    )  # fmt: skip
    list_filter = ("currency", "month")
    search_fields = ("number", "tenant_slug")
    fields = (
        "number", "tenant", "month", "period_start", "period_end", "time_zone", "currency",
        "exchange_rate", "markup_percent", "subtotal_usd", "adjustments_usd", "markup_usd",
        "total_usd", "total", "closed_at", "closed_by", "documents",
    )  # fmt: skip
    readonly_fields = fields
    list_select_related = ("tenant",)
    inlines = (StatementLineInline,)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        # Ahead of the model's own URLs, whose "<path:object_id>/" would take these.
        return [
            re_path(
                rf"^print/{_TENANT}/{_MONTH}/$",
                wrap(self.printable),
                name="billing_statement_print",
            ),
            re_path(
                rf"^print/{_TENANT}/{_MONTH}/pdf/$",
                wrap(self.pdf),
                name="billing_statement_pdf",
            ),
            path("close/", wrap(self.close_month), name="billing_statement_close"),
            *super().get_urls(),
        ]

    def close_month(self, request: HttpRequest) -> HttpResponse:
        context = {**self.admin_site.each_context(request), "opts": self.opts}
        return close_month_page(request, admin_context=context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        can_close = request.user.has_perm(CLOSE_PERMISSION)
        return super().changelist_view(
            request, {**(extra_context or {}), "can_close_month": can_close}
        )

    def printable(self, request: HttpRequest, tenant_slug: str, month: str) -> HttpResponse:
        return views.statement_page(request, tenant_slug=tenant_slug, month=month)

    def pdf(self, request: HttpRequest, tenant_slug: str, month: str) -> HttpResponse:
        return views.statement_pdf_download(request, tenant_slug=tenant_slug, month=month)

    @admin.display(description="total (USD)", ordering="total_usd")
    def total_in_usd(self, obj: Statement) -> str:
        return usd(obj.total_usd)

    @admin.display(description="total", ordering="total")
    def total_in_currency(self, obj: Statement) -> str:
        places = CURRENCY_MINOR_UNITS.get(obj.currency, 2)
        return f"{obj.currency} {obj.total.quantize(Decimal(1).scaleb(-places)):,}"

    @admin.display(description="documents")
    def documents(self, obj: Statement) -> str:
        page, pdf = statement_urls(obj.tenant_slug, obj.month)
        return format_html('<a href="{}">printable</a> · <a href="{}">PDF</a>', page, pdf)


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "day", "tenant_slug", "key_prefix", "route", "provider", "model", "tags", "requests",
        "total_tokens", "cost_usd", "late",
    )  # fmt: skip
    list_filter = ("late",)
    search_fields = ("tenant_slug", "model", "route")
    date_hierarchy = "day"
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [field.name for field in DailyUsage._meta.fields]


@admin.register(ReportExport)
class ReportExportAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Every report file, for whoever may view them; each downloadable by the user who asked
    for it, or a superuser (billing.report_exports.report_export_get)."""

    list_display = (
        "created_at", "requested_by", "format", "status", "progress", "file_name", "finished_at",
        "download",
    )  # fmt: skip
    list_filter = ("status", "format")
    list_select_related = ("requested_by",)
    fields = (
        "id", "requested_by", "parameters", "format", "status", "progress", "file_name",
        "error", "created_at", "finished_at", "download",
    )  # fmt: skip
    readonly_fields = fields

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        # Ahead of the model's own URLs, whose "<path:object_id>/" would take it.
        return [
            path("<uuid:export_id>/file/", wrap(self.file), name="billing_reportexport_file"),
            *super().get_urls(),
        ]

    def file(self, request: HttpRequest, export_id: object) -> HttpResponseBase:
        return report_file_response(request, export_id=str(export_id))

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportExport]:
        # Whether this user may download each one: a column, so the list needs no request.
        mine: Q | Value = (
            Value(True) if request.user.is_superuser else Q(requested_by_id=request.user.pk)
        )
        return (
            super()
            .get_queryset(request)
            .annotate(downloadable=ExpressionWrapper(mine, output_field=BooleanField()))
        )

    @admin.display(description="file")
    def download(self, obj: ReportExport) -> str:
        url = download_url(obj) if getattr(obj, "downloadable", False) else None
        return format_html('<a href="{}">download</a>', url) if url else "-"
