"""Admin for tenants and their API keys.

Keys are only ever created through `api_key_issue`: the plaintext exists in memory for
the one response that shows it and is never written to the database, the session or a
message cookie.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MinValueValidator
from django.db.models import Count, Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from routing.models import Route
from tenants.models import ApiKey, ManagementToken, Tenant, UsagePolicy
from tenants.selectors import api_key_status_q
from tenants.services import (
    IssuedKey,
    api_key_expiry_validate,
    api_key_issue,
    api_key_revoke,
    api_key_routes_validate,
    management_tokens_revoke,
    tenant_create,
    tenant_set_status,
)

# How many known route names the key form lists as a hint before giving up.
_ROUTE_HINT_LIMIT = 30


def adopt(obj: Model, saved: Model) -> None:
    """Turn the admin's unsaved instance into the row a service has just created.

    The admin keeps using the instance it built from the form (for the inline formsets,
    the history entry and the redirect), so that instance must become the saved row
    rather than be swapped for the one the service returned.
    """
    obj.pk = saved.pk
    obj.refresh_from_db()
    obj._state.adding = False


def _policy_of(obj: UsagePolicy) -> dict[str, Any]:
    """The form's policy, as the keyword arguments `tenant_create` and `api_key_issue` take."""
    return {name: getattr(obj, name) for name in UsagePolicy.POLICY_FIELDS}


_POLICY_FIELDSET = (
    "Policy",
    {
        "fields": UsagePolicy.POLICY_FIELDS,
        "classes": ("collapse",),
        "description": "Request limits. Empty means no limit at this level; where the tenant "
        "and a key both set one, the smaller applies.",
    },
)


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

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list | tuple):
            items: Iterable[str] = (str(item) for item in value)
        else:
            items = (super().to_python(value) or "").replace("\n", ",").split(",")
        # dict.fromkeys drops repeats but keeps the order the operator typed.
        return list(dict.fromkeys(item.strip() for item in items if item.strip()))

    def has_changed(self, initial: Any, data: Any) -> bool:
        return self.to_python(initial or []) != self.to_python(data)


# --- Tenants ----------------------------------------------------------------------------------


class ApiKeyInline(admin.TabularInline):
    """The tenant's keys, for reading only: keys are issued and revoked on their own pages."""

    model = ApiKey
    template = "admin/tenants/tenant/apikey_inline.html"
    fields = ("prefix", "name", "status", "expires_at", "last_used_at", "created_at")
    readonly_fields = fields  # "status" is ApiKey.status
    ordering = ("-created_at",)
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class TenantForm(PolicyFormMixin):
    allowed_routes = RouteNamesField(
        required=False,
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "e.g. chat, chat-fast"}),
        help_text="Comma-separated route names this tenant's keys may call. Leave empty to "
        "allow every route it can see (the global ones and its own).",
    )

    class Meta:
        model = Tenant
        fields = (
            "slug",
            "name",
            "status",
            "metadata",
            "allowed_routes",
            *UsagePolicy.POLICY_FIELDS,
        )

    def clean_allowed_routes(self) -> list[str]:
        names = self.cleaned_data.get("allowed_routes") or []
        if not names:
            return []
        if self.instance.pk is None:
            # Not on the add form: a tenant that does not exist yet owns no routes.
            raise ValidationError("Save the tenant first, then limit its routes.")
        return api_key_routes_validate(tenant=self.instance, allowed_routes=names)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ("slug", "name", "status", "routes", "active_keys", "created_at")
    list_filter = ("status",)
    search_fields = ("slug", "name")
    ordering = ("slug",)
    readonly_fields = ("created_at", "updated_at")
    add_fieldsets = ((None, {"fields": ("slug", "name", "status", "metadata")}), _POLICY_FIELDSET)
    change_fieldsets = (
        (None, {"fields": ("slug", "name", "status", "metadata", "allowed_routes")}),
        _POLICY_FIELDSET,
        ("Record", {"fields": ("created_at", "updated_at")}),
    )
    inlines = (ApiKeyInline,)
    actions = ("suspend", "activate")

    def get_fieldsets(self, request: HttpRequest, obj: Tenant | None = None) -> Any:
        # Limiting routes needs the tenant's own routes, which a new tenant does not have.
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_inlines(self, request: HttpRequest, obj: Tenant | None) -> Any:
        # A tenant being added has no keys yet, and keys are issued on their own page.
        return self.inlines if obj is not None else ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_key_count=Count(
                    "api_keys", filter=api_key_status_q(ApiKey.Status.ACTIVE, prefix="api_keys__")
                )
            )
        )

    @admin.display(description="allowed routes")
    def routes(self, obj: Tenant) -> str:
        return ", ".join(obj.allowed_routes) if obj.allowed_routes else "all"

    @admin.display(description="active keys", ordering="active_key_count")
    def active_keys(self, obj: Tenant) -> str:
        url = reverse("admin:tenants_apikey_changelist") + f"?tenant__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.active_key_count)  # type: ignore[attr-defined]

    def save_model(self, request: HttpRequest, obj: Tenant, form: forms.Form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = tenant_create(
            slug=obj.slug,
            name=obj.name,
            status=obj.status,
            metadata=obj.metadata,
            allowed_routes=list(obj.allowed_routes or []),
            **_policy_of(obj),
        )
        adopt(obj, created)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Tenant], status: str) -> int:
        changed = 0
        for tenant in queryset.exclude(status=status):
            tenant_set_status(tenant=tenant, status=status)
            changed += 1
        return changed

    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        changed = self._set_status(request, queryset, Tenant.Status.SUSPENDED)
        self.message_user(request, f"Suspended {changed} tenant(s).", messages.SUCCESS)

    @admin.action(description="Activate selected tenants", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        changed = self._set_status(request, queryset, Tenant.Status.ACTIVE)
        self.message_user(request, f"Activated {changed} tenant(s).", messages.SUCCESS)


# --- API keys ----------------------------------------------------------------------------------


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
        names = list(
            Route.objects.order_by("name")
            .values_list("name", flat=True)
            .distinct()[: _ROUTE_HINT_LIMIT + 1]
        )
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
        _POLICY_FIELDSET,
    )
    change_fieldsets = (
        (None, {"fields": ("tenant", "prefix", "name", "allowed_routes", "expires_at")}),
        _POLICY_FIELDSET,
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
            super().save_model(request, obj, form, change)
            return
        issued = api_key_issue(
            tenant=obj.tenant,
            name=obj.name,
            allowed_routes=list(obj.allowed_routes or []),
            expires_at=obj.expires_at,
            **_policy_of(obj),
        )
        adopt(obj, issued.api_key)
        # Lives on this request only: response_add shows it and the request is discarded.
        request._issued_key = issued  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        issued: IssuedKey | None = getattr(request, "_issued_key", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered, not redirected: a redirect would carry the key in a message cookie or
        # the session until the next page load. Messages added and displayed within this
        # one response are never stored.
        messages.success(
            request,
            format_html(
                'Issued key “{}” for tenant {}: <code class="issued-key">{}</code>',
                obj.name,
                obj.tenant,
                issued.plaintext,
            ),
        )
        messages.warning(
            request, "Copy the key now. It is not stored anywhere and will not be shown again."
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key issued",
            "api_key": obj,
            "is_popup": IS_POPUP_VAR in request.POST,
            "change_url": reverse("admin:tenants_apikey_change", args=[obj.pk]),
            "tenant_url": reverse("admin:tenants_tenant_change", args=[obj.tenant_id]),
            "add_url": reverse("admin:tenants_apikey_add") + f"?tenant={obj.tenant_id}",
        }
        response = TemplateResponse(request, "admin/tenants/apikey/issued.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            self.log_change(request, api_key, "Revoked.")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)

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


@admin.register(ManagementToken)
class ManagementTokenAdmin(admin.ModelAdmin):
    """Who holds management API tokens, until when, and when each was last used.

    Issued by `manage.py management_token_issue` only (it prints the token once), and
    revoked here or by `manage.py management_token_revoke`, both through
    `management_tokens_revoke`. The digest is not listed: it is the primary key, so it is in
    the change page's address, which is harmless (it cannot be turned back into the token)
    but no help to anyone; `token_key` tells tokens apart.
    """

    list_display = ("token_key", "user", "name", "created", "expiry", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("token_key", "name", "user__username")
    raw_id_fields = ("user",)
    ordering = ("-created",)
    fields = ("token_key", "user", "name", "created", "expiry", "last_used_at")
    readonly_fields = fields
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Revoking is the action below, through the service, like the command.
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ManagementToken]) -> None:
        for token in queryset:
            self.log_change(request, token, "Revoked.")
        revoked = management_tokens_revoke(tokens=queryset)
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
