"""Management API for finance: usage reports, their downloads, statements and report files
built in the background (staff with model permissions; mounted under /api/v1/billing/).

                                                      permission needed
GET   /api/v1/billing/usage/                          billing.view_dailyusage
GET   /api/v1/billing/usage.csv                       billing.view_dailyusage
GET   /api/v1/billing/lines.csv                       billing.view_usageline
GET   /api/v1/billing/statements/<tenant>/<month>/    billing.view_statement
GET   /api/v1/billing/exports/                        billing.view_reportexport (own only)
POST  /api/v1/billing/exports/                        billing.add_reportexport and
                                                      billing.view_dailyusage (kind=lines:
                                                      billing.view_usageline as well)
GET   /api/v1/billing/exports/<id>/                   billing.view_reportexport, and
GET   /api/v1/billing/exports/<id>/download/          the user who asked (or a superuser)

Usage parameters (query string, or the body of an export): tenant (slug; all when absent),
month (YYYY-MM) or start and end (YYYY-MM-DD, both included, at most 366 days),
group_by (model, route, key, tag, day, tenant), tag_key (with group_by=tag).
Nothing here shows a key's secret (only its public prefix), a prompt or an answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import exports, statements
from billing.models import DailyUsage, ReportExport, Statement, UsageLine
from billing.report_exports import (
    report_export_file,
    report_export_get,
    report_export_start,
    report_exports_for_user,
    report_file_name,
)
from billing.reports import (
    GROUP_BY,
    ReportQuery,
    ReportQueryError,
    parse_report_query,
    query_parameters,
    usage_report,
)
from billing.serializers import (
    ReportExportPageSerializer,
    ReportExportSerializer,
    ReportExportStartSerializer,
    ReportRowSerializer,
    ReportTotalSerializer,
    SeriesPointSerializer,
    StatementSerializer,
    UsageReportSerializer,
)
from gateway_project.lib.drf import ManagementAPIMixin
from gateway_project.lib.ratelimit import AuthFailureRateLimitMixin
from gateway_project.lib.streaming import SyncStreamingResponse

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}

REPORT_PARAMETERS = [
    OpenApiParameter("tenant", str, description="A tenant's slug; every tenant when absent."),
    OpenApiParameter(
        "month", str, description="YYYY-MM, in each tenant's time zone (or start and end)."
    ),
    OpenApiParameter("start", OpenApiTypes.DATE, description="First billing day, included."),
    OpenApiParameter("end", OpenApiTypes.DATE, description="Last billing day, included."),
    OpenApiParameter("group_by", str, enum=list(GROUP_BY), default="model"),
    OpenApiParameter("tag_key", str, description="With group_by=tag: by this tag's value."),
]


class NotReady(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The file is not built yet."
    default_code = "export_not_ready"


class _JSONErrorsOnly(BaseContentNegotiation):
    """For the download views: the body is the file whatever `Accept` says (a client asking
    for text/csv is no reason for a 406), and errors are JSON, in the envelope."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return JSONRenderer(), JSONRenderer.media_type


class _BillingView(AuthFailureRateLimitMixin, ManagementAPIMixin, APIView):
    pass


class _DownloadView(_BillingView):
    content_negotiation_class = _JSONErrorsOnly


class ReportRowsPagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


def _invalid(error: ReportQueryError) -> exceptions.ValidationError:
    detail = exceptions.ErrorDetail(str(error), code="invalid")
    return exceptions.ValidationError({error.param or "non_field_errors": [detail]})


def _report_query(request: Request) -> ReportQuery:
    try:
        return parse_report_query(request.query_params)
    except ReportQueryError as error:
        raise _invalid(error) from None


def _download(
    chunks: Iterator[str] | Iterator[bytes], *, file_name: str, size: int | None = None
) -> SyncStreamingResponse:
    extension = file_name.rsplit(".", 1)[-1]
    response = SyncStreamingResponse(chunks, content_type=CONTENT_TYPES[extension])
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    response["Cache-Control"] = "no-store"
    if size is not None:
        response["Content-Length"] = str(size)
    return response


class UsageReportView(_BillingView):
    permission_model = DailyUsage

    @extend_schema(
        operation_id="billing_usage",
        parameters=[
            *REPORT_PARAMETERS,
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description="Rows per page, at most 1000."),
        ],
        responses=UsageReportSerializer,
    )
    def get(self, request: Request) -> Response:
        """Usage from the daily roll-ups, grouped: a page of rows, the total and the daily
        series of the whole report."""
        report = usage_report(_report_query(request))
        paginator = ReportRowsPagination()
        page = paginator.paginate_queryset(report.rows, request, view=self)
        assert paginator.page is not None
        return Response(
            {
                "count": paginator.page.paginator.count,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "query": query_parameters(report.query),
                "as_of": report.as_of,
                "results": ReportRowSerializer(page, many=True).data,
                "total": ReportTotalSerializer(report.total).data,
                "series": SeriesPointSerializer(report.series, many=True).data,
            }
        )


class UsageReportCsvView(_DownloadView):
    permission_model = DailyUsage

    @extend_schema(
        operation_id="billing_usage_csv",
        parameters=REPORT_PARAMETERS,
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
    )
    def get(self, request: Request) -> SyncStreamingResponse:
        """The report as CSV (streamed): a row per group, then the total."""
        query = _report_query(request)
        name = report_file_name(parameters=query_parameters(query), format="csv")
        return _download(exports.report_csv(usage_report(query)), file_name=name)


class LedgerLinesCsvView(_DownloadView):
    permission_model = UsageLine

    @extend_schema(
        operation_id="billing_lines_csv",
        parameters=REPORT_PARAMETERS[:4],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
    )
    def get(self, request: Request) -> SyncStreamingResponse:
        """The ledger lines of the period as CSV, streamed in constant memory: one per
        billable request, with its tokens, cost and tags (no prompt, no answer)."""
        query = _report_query(request)
        parameters = {**query_parameters(query), "kind": "lines"}
        name = report_file_name(parameters=parameters, format="csv")
        return _download(exports.ledger_lines_csv(query), file_name=name)


class StatementDetailView(_BillingView):
    permission_model = Statement

    @extend_schema(operation_id="billing_statement", responses=StatementSerializer)
    def get(self, request: Request, tenant: str, month: str) -> Response:
        """A tenant's statement of a month: the issued one once the month is closed, else a
        draft computed now (number null)."""
        try:
            parse_report_query({"tenant": tenant, "month": month})
        except ReportQueryError as error:
            if error.param == "tenant":
                raise exceptions.NotFound(str(error)) from None
            raise _invalid(error) from None
        try:
            view = statements.statement_get(tenant_slug=tenant, month=month)
        except ValueError as error:
            raise _invalid(ReportQueryError(str(error), param="month")) from None
        return Response(StatementSerializer(view).data)


class ReportExportsView(_BillingView):
    permission_model = ReportExport
    # Starting one reads usage (and ledger lines for kind=lines, checked below).
    method_permissions = {"POST": ["billing.add_reportexport", "billing.view_dailyusage"]}

    @extend_schema(
        operation_id="billing_exports_list",
        parameters=[OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses=ReportExportPageSerializer,
    )
    def get(self, request: Request) -> Response:
        """The report files you asked for, newest first."""
        paginator = ReportRowsPagination()
        exports_seen = report_exports_for_user(user=request.user)
        page = paginator.paginate_queryset(exports_seen, request, view=self)
        data = ReportExportSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="billing_exports_create",
        request=ReportExportStartSerializer,
        responses={201: ReportExportSerializer, 202: ReportExportSerializer},
    )
    def post(self, request: Request) -> Response:
        """Build a report file in the background: 201 when it is already built (no worker:
        it ran inline), 202 while a worker builds it; poll its URL for the progress."""
        serializer = ReportExportStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        parameters = serializer.parameters()
        if parameters["kind"] == "lines" and not request.user.has_perm("billing.view_usageline"):
            raise exceptions.PermissionDenied(
                "Exporting ledger lines needs billing.view_usageline."
            )
        try:
            export = report_export_start(
                user=request.user, parameters=parameters, format=serializer.validated_data["format"]
            )
        except ReportQueryError as error:
            raise _invalid(error) from None
        done = export.status == ReportExport.Status.DONE
        return Response(
            ReportExportSerializer(export, context={"request": request}).data,
            status=status.HTTP_201_CREATED if done else status.HTTP_202_ACCEPTED,
        )


def _own_export(request: Request, pk: Any) -> ReportExport:
    export = report_export_get(user=request.user, export_id=str(pk))
    if export is None:
        raise exceptions.NotFound("No such report file.")
    return export


class ReportExportDetailView(_BillingView):
    permission_model = ReportExport

    @extend_schema(operation_id="billing_export", responses=ReportExportSerializer)
    def get(self, request: Request, pk: Any) -> Response:
        """A report file's status and progress (percent); its download link once built."""
        export = _own_export(request, pk)
        return Response(ReportExportSerializer(export, context={"request": request}).data)


def _file_chunks(file_path: Path) -> Iterator[bytes]:
    with file_path.open("rb") as file:
        while block := file.read(64 * 1024):
            yield block


class ReportExportDownloadView(_DownloadView):
    permission_model = ReportExport

    @extend_schema(
        operation_id="billing_export_download",
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY)},
    )
    def get(self, request: Request, pk: Any) -> SyncStreamingResponse:
        """The built file (409 while it is being built)."""
        export = _own_export(request, pk)
        file_path = report_export_file(export)
        if file_path is None:
            if export.status == ReportExport.Status.FAILED:
                raise exceptions.NotFound(f"The file was not built: {export.error}")
            raise NotReady
        name = report_file_name(parameters=export.parameters, format=export.format)
        return _download(_file_chunks(file_path), file_name=name, size=file_path.stat().st_size)


urlpatterns = [
    path("usage/", UsageReportView.as_view(), name="billing-usage"),
    path("usage.csv", UsageReportCsvView.as_view(), name="billing-usage-csv"),
    path("lines.csv", LedgerLinesCsvView.as_view(), name="billing-lines-csv"),
    path(
        "statements/<slug:tenant>/<str:month>/",
        StatementDetailView.as_view(),
        name="billing-statement",
    ),
    path("exports/", ReportExportsView.as_view(), name="billing-exports"),
    path("exports/<uuid:pk>/", ReportExportDetailView.as_view(), name="billing-export"),
    path(
        "exports/<uuid:pk>/download/",
        ReportExportDownloadView.as_view(),
        name="billing-export-download",
    ),
]
