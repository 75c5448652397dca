"""Serializers for the tenant and key endpoints of the management API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone
from rest_framework import serializers

from routing.models import Route
from tenants.models import ApiKey, Tenant
from tenants.services import tenant_create


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ("id", "slug", "name", "status", "metadata", "created_at", "updated_at")
        read_only_fields = ("id", "created_at", "updated_at")

    def create(self, validated_data: dict[str, Any]) -> Tenant:
        return tenant_create(**validated_data)


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as anyone may see it: the prefix, never the hash."""

    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.SerializerMethodField()

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

    def get_status(self, obj: ApiKey) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "expired"
        return "active"


class ApiKeyIssueSerializer(serializers.Serializer):
    """What a caller may choose when issuing a key; the view passes the tenant in context."""

    name = serializers.CharField(max_length=200)
    allowed_routes = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, default=list
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_expires_at(self, value: datetime | None) -> datetime | None:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.", code="invalid")
        return value

    def validate_allowed_routes(self, value: list[str]) -> list[str]:
        names = list(dict.fromkeys(name.strip() for name in value if name.strip()))
        tenant: Tenant = self.context["tenant"]
        known = set(
            Route.objects.filter(
                Q(tenant__isnull=True) | Q(tenant=tenant), name__in=names
            ).values_list("name", flat=True)
        )
        unknown = [name for name in names if name not in known]
        if unknown:
            # A typo here would silently lock the key out of the route it was made for.
            raise serializers.ValidationError(
                f"Tenant {tenant.slug} has no route named {', '.join(unknown)}.",
                code="unknown_route",
            )
        return names
