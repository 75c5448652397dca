"""Serializers for the tenant and key endpoints of the management API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers

from tenants.models import ApiKey, Tenant
from tenants.services import (
    api_key_expiry_validate,
    api_key_routes_validate,
    tenant_create,
    tenant_update,
)


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ("id", "slug", "name", "status", "metadata", "created_at", "updated_at")
        read_only_fields = ("id", "created_at", "updated_at")

    def create(self, validated_data: dict[str, Any]) -> Tenant:
        return tenant_create(**validated_data)

    def update(self, instance: Tenant, validated_data: dict[str, Any]) -> Tenant:
        # By the row, not tenant_upsert: the body may rename the slug, and an upsert by slug
        # would make a second tenant. A PATCH passes only the fields it names.
        return tenant_update(tenant=instance, **validated_data).instance


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as anyone may see it: the prefix, never the hash."""

    tenant: serializers.SlugRelatedField[Tenant] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    status = serializers.ChoiceField(choices=ApiKey.Status.choices, read_only=True)

    class Meta:
        model = ApiKey
        fields = (
            "id",
            "tenant",
            "name",
            "prefix",
            "status",
            "allowed_routes",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "created_at",
        )
        read_only_fields = fields


class ApiKeyIssueSerializer(serializers.Serializer):
    """What a caller may choose when issuing a key; the view passes the tenant in context."""

    name = serializers.CharField(max_length=200)
    allowed_routes = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, default=list
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    # The services raise Django's ValidationError; DRF turns one raised in a validate_<field>
    # method into an error on that field, keeping its code (e.g. "unknown_route").

    def validate_expires_at(self, value: datetime | None) -> datetime | None:
        api_key_expiry_validate(expires_at=value)
        return value

    def validate_allowed_routes(self, value: list[str]) -> list[str]:
        return api_key_routes_validate(tenant=self.context["tenant"], allowed_routes=value)
