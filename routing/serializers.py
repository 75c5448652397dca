"""Serializers for the (read-only) route and configuration version endpoints of the
management API."""

from __future__ import annotations

from rest_framework import serializers

from routing.models import ConfigVersion, Route, RouteTarget
from routing.versions.selectors import config_version_document
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


class ConfigVersionSerializer(serializers.ModelSerializer):
    """A version in a list: who, when, what; its document only on its own page."""

    class Meta:
        model = ConfigVersion
        fields: tuple[str, ...] = (
            "id", "created_at", "actor", "summary", "routing_version", "rollback_of",
        )  # fmt: skip
        read_only_fields = fields


class ConfigVersionDetailSerializer(ConfigVersionSerializer):
    document = serializers.SerializerMethodField(help_text="The configuration as YAML.")

    class Meta(ConfigVersionSerializer.Meta):
        fields = (*ConfigVersionSerializer.Meta.fields, "changes", "document")
        read_only_fields = fields

    def get_document(self, version: ConfigVersion) -> str:
        return config_version_document(version=version)
