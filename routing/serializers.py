"""Serializers for the (read-only) route endpoints of the management API."""

from __future__ import annotations

from rest_framework import serializers

from routing.models import Route, RouteTarget
from tenants.models import Tenant


class RouteTargetSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider_model.provider.name")
    model = serializers.CharField(source="provider_model.name")

    class Meta:
        model = RouteTarget
        fields = ("position", "provider", "model", "weight", "enabled")
        read_only_fields = fields


class RouteSerializer(serializers.ModelSerializer):
    tenant: serializers.SlugRelatedField[Tenant] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, help_text="null for a global route."
    )
    targets = RouteTargetSerializer(many=True, read_only=True)

    class Meta:
        model = Route
        fields = (
            "id",
            "name",
            "tenant",
            "strategy",
            "description",
            "enabled",
            "targets",
            "updated_at",
        )
        read_only_fields = fields
