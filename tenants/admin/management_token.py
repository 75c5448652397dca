"""The management API token admin: who holds tokens, until when, revoking them."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from tenants.models import ManagementToken
from tenants.services import management_tokens_revoke


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

    def save_model(
        self, request: HttpRequest, obj: ManagementToken, form: forms.Form, change: bool
    ) -> None:
        """Nothing to save: every field is read-only (the change permission is for revoking)."""

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ManagementToken]) -> None:
        for token in queryset:
            self.log_change(request, token, "Revoked.")
        revoked = management_tokens_revoke(tokens=queryset)
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
