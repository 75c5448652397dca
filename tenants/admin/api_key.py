"""The API key admin: keys are issued through `api_key_issue` only, and edited, revoked and
deleted through the other tenants.services functions.

The plaintext exists in memory for the one response that shows it and is never written to
the database, the session or a message cookie.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers

from gateway_project.lib.admin_writes import adopt, stored, values_of
from tenants.admin.forms import POLICY_FIELDSET, PolicyFormMixin, RouteNamesField, policy_of
from tenants.models import ApiKey, UsagePolicy
from tenants.route_names import route_names_known
from tenants.selectors import api_key_status_q
from tenants.services import (
    IssuedKey,
    api_key_delete,
    api_key_expiry_validate,
    api_key_issue,
    api_key_revoke,
    api_key_routes_validate,
    api_key_update,
)

# How many known route names the key form lists as a hint before giving up.
_ROUTE_HINT_LIMIT = 30


class ApiKeyForm(PolicyFormMixin):
    allowed_routes = RouteNamesField(
        required=False,
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "e.g. chat, chat-fast"}),
        help_text="Comma-separated route names. Leave empty to allow every route the tenant can see.",
    )

    class Meta:
        model = ApiKey
        fields = ("tenant", "name", "allowed_routes", "expires_at", *UsagePolicy.POLICY_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = route_names_known(limit=_ROUTE_HINT_LIMIT + 1)
        if names:
            shown = ", ".join(names[:_ROUTE_HINT_LIMIT])
            more = ", …" if len(names) > _ROUTE_HINT_LIMIT else ""
            self.fields["allowed_routes"].help_text += f" Known routes: {shown}{more}."

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if not self.instance.pk:  # only when issuing: an existing key may have expired since
            api_key_expiry_validate(expires_at=expires_at)
        return expires_at

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns self.cleaned_data
        # On the change form the tenant is read-only, so it is not in cleaned_data.
        tenant = cleaned.get("tenant") or (self.instance.tenant if self.instance.pk else None)
        if tenant is not None and "allowed_routes" in cleaned:
            try:
                cleaned["allowed_routes"] = api_key_routes_validate(
                    tenant=tenant, allowed_routes=cleaned["allowed_routes"]
                )
            except ValidationError as exc:
                self.add_error("allowed_routes", exc)
        return cleaned


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return ApiKey.Status.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        value = self.value()
        if value in ApiKey.Status.values:
            return queryset.filter(api_key_status_q(value))
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = (
        "prefix",
        "name",
        "tenant",
        "status",
        "routes",
        "expires_at",
        "last_used_at",
    )
    list_select_related = ("tenant",)
    list_filter = (KeyStatusFilter,)
    search_fields = ("prefix", "name", "tenant__slug")
    autocomplete_fields = ("tenant",)
    ordering = ("-created_at",)
    actions = ("revoke",)

    add_fieldsets = (
        (None, {"fields": ("tenant", "name", "allowed_routes", "expires_at")}),
        POLICY_FIELDSET,
    )
    change_fieldsets = (
        (None, {"fields": ("tenant", "prefix", "name", "allowed_routes", "expires_at")}),
        POLICY_FIELDSET,
        ("State", {"fields": ("status", "revoked_at", "last_used_at", "created_at")}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ()
        # The hash is never shown; moving a key to another tenant is never what anyone means.
        return ("tenant", "prefix", "status", "revoked_at", "last_used_at", "created_at")

    def get_urls(self) -> list[URLPattern]:
        revoke = path(
            "<path:object_id>/revoke/",
            self.admin_site.admin_view(self.revoke_view),
            name="tenants_apikey_revoke",
        )
        return [revoke, *super().get_urls()]

    @admin.display(description="allowed routes")
    def routes(self, obj: ApiKey) -> str:
        return ", ".join(obj.allowed_routes) if obj.allowed_routes else "all"

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ApiKey | None = None,
    ) -> HttpResponse:
        if add:
            # The issued key is shown on a page of its own; "save and continue/add another"
            # would skip it.
            context.update(
                title="Issue an API key",
                show_save_and_continue=False,
                show_save_and_add_another=False,
            )
        context["is_revoked"] = obj is not None and obj.revoked_at is not None
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.Form, change: bool) -> None:
        if change:
            # The form checked the route names with the service's own validator.
            adopt(obj, api_key_update(api_key=stored(obj), **values_of(obj, form.fields)).instance)
            return
        issued = api_key_issue(
            tenant=obj.tenant,
            name=obj.name,
            allowed_routes=list(obj.allowed_routes or []),
            expires_at=obj.expires_at,
            **policy_of(obj),
        )
        adopt(obj, issued.api_key)
        # Lives on this request only: response_add shows it and the request is discarded.
        request._issued_key = issued  # type: ignore[attr-defined]  # for response_add, this request only

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        issued: IssuedKey | None = getattr(request, "_issued_key", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered, not redirected: a redirect would carry the key in a message cookie or
        # the session until the next page load. The key is in this response's context only.
        messages.success(request, f"Issued key “{obj.name}” for tenant {obj.tenant}.")
        messages.warning(
            request, "Copy the key now. It is not stored anywhere and will not be shown again."
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key issued",
            "api_key": obj,
            "plaintext": issued.plaintext,
            "is_popup": IS_POPUP_VAR in request.POST,
            "change_url": reverse("admin:tenants_apikey_change", args=[obj.pk]),
            "tenant_url": reverse("admin:tenants_tenant_change", args=[obj.tenant_id]),
            "add_url": reverse("admin:tenants_apikey_add") + f"?tenant={obj.tenant_id}",
        }
        response = TemplateResponse(request, "admin/tenants/apikey/issued.html", context)
        add_never_cache_headers(response)
        return response

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        api_key_delete(api_key=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_delete(api_key=api_key)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        """Asks first (like Django's delete action), then revokes through the service."""
        active = list(queryset.filter(revoked_at__isnull=True).select_related("tenant"))
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Revoke API keys",
                "keys": active,
                "already_revoked": queryset.count() - len(active),
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            }
            return TemplateResponse(
                request, "admin/tenants/apikey/revoke_selected_confirmation.html", context
            )
        for api_key in active:
            api_key_revoke(api_key=api_key)
            self.log_change(request, api_key, "Revoked.")
        self.message_user(request, f"Revoked {len(active)} key(s).", messages.SUCCESS)
        return None

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        api_key = get_object_or_404(ApiKey.objects.select_related("tenant"), pk=object_id)
        if not self.has_change_permission(request, api_key):
            raise PermissionDenied
        change_url = reverse("admin:tenants_apikey_change", args=[api_key.pk])
        if request.method == "POST":
            api_key_revoke(api_key=api_key)
            self.log_change(request, api_key, "Revoked.")
            self.message_user(request, f"Revoked key {api_key}.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Revoke API key",
            "api_key": api_key,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/tenants/apikey/revoke_confirmation.html", context)
