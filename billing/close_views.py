"""Closing a month from the admin: what the `billing_close` command does, for Finance.

Two steps, so nothing is issued by a stray click: the form shows, per tenant, the months a
close would issue statements for (earlier open months first) and every reason it may not
yet; confirming closes them (billing.closing.period_close, the one write path). Issuing a
statement is adding one: billing.add_statement, which Finance holds (billing 0008)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from billing.closing import PeriodCloseError, close_plans, close_refusals, period_close
from billing.models.terms import validate_month

CLOSE_PERMISSION = "billing.add_statement"


class CloseMonthForm(forms.Form):
    month = forms.CharField(max_length=7, validators=[validate_month], help_text="YYYY-MM")
    tenant = forms.SlugField(
        required=False, help_text="A tenant's slug; empty: every tenant with unbilled usage."
    )


def close_month_page(request: HttpRequest, *, admin_context: dict[str, Any]) -> HttpResponse:
    if not request.user.has_perm(CLOSE_PERMISSION):
        raise PermissionDenied
    form = CloseMonthForm(request.POST if request.method == "POST" else None)
    context: dict[str, Any] = {**admin_context, "title": "Close a month", "form": form}
    if request.method != "POST" or not form.is_valid():
        return TemplateResponse(request, "admin/billing/close_month.html", context)
    month, slug = form.cleaned_data["month"], form.cleaned_data["tenant"] or None
    try:
        if "confirm" in request.POST:
            made = period_close(month=month, tenant_slug=slug, user=request.user)
            numbers = ", ".join(statement.number for statement in made) or "none"
            messages.success(
                request, f"Closed {month}: {len(made)} statement(s) issued ({numbers})."
            )
            return HttpResponseRedirect(reverse("admin:billing_statement_changelist"))
        plans = close_plans(month=month, tenant_slug=slug)
    except PeriodCloseError as error:
        form.add_error(None, str(error))
        return TemplateResponse(request, "admin/billing/close_month.html", context)
    context.update(plans=plans, refusals=close_refusals(plans), previewed=True)
    return TemplateResponse(request, "admin/billing/close_month.html", context)
