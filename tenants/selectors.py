"""Reads for tenants and keys (admin and APIs; the proxy reads the snapshot instead)."""

from __future__ import annotations

from django.db.models import QuerySet

from tenants.models import ApiKey, Tenant


def tenant_get(*, slug: str) -> Tenant:
    return Tenant.objects.get(slug=slug)


def api_keys_for_tenant(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at")
