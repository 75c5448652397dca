"""Reads for tenants and keys (admin and APIs; the proxy reads the snapshot instead)."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.utils import timezone

from tenants.models import ApiKey, ManagementToken, Tenant, UsagePolicy


def tenant_get(*, slug: str) -> Tenant:
    return Tenant.objects.get(slug=slug)


def tenant_list() -> QuerySet[Tenant]:
    return Tenant.objects.order_by("slug")


def tenants_by_slug(*, slugs: Iterable[str]) -> dict[str, Tenant]:
    """The tenants among `slugs` that exist, by slug (missing ones are simply absent)."""
    return {tenant.slug: tenant for tenant in Tenant.objects.filter(slug__in=set(slugs))}


def api_keys_for_tenant(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at")


def api_key_status_q(status: str, *, prefix: str = "") -> Q:
    """`ApiKey.status == status` as a filter, for keys or (with `prefix`, e.g. "api_keys__")
    for rows related to keys, so lists and counts agree with what each key shows."""

    def q(lookup: str, value: object) -> Q:
        return Q(**{f"{prefix}{lookup}": value})

    now = timezone.now()
    if status == ApiKey.Status.REVOKED:
        return q("revoked_at__isnull", False)
    if status == ApiKey.Status.EXPIRED:
        return q("revoked_at__isnull", True) & q("expires_at__lte", now)
    if status == ApiKey.Status.ACTIVE:
        return q("revoked_at__isnull", True) & (
            q("expires_at__isnull", True) | q("expires_at__gt", now)
        )
    raise ValueError(f"Unknown key status {status!r}.")


def management_tokens_of(*, user: AbstractBaseUser) -> QuerySet[ManagementToken]:
    return ManagementToken.objects.filter(user=user)


def api_keys_with_settings(
    *, also: Iterable[int] = (), tenant_ids: Iterable[int] | None = None
) -> QuerySet[ApiKey]:
    """Keys (revoked ones too) that carry a setting of their own: allowed routes, a policy
    field, or, for the ids in `also`, limits the caller found (billing keeps those).
    In prefix order, with their tenants."""
    has_settings = Q(pk__in=set(also)) | ~Q(allowed_routes=[])
    for name in UsagePolicy.POLICY_FIELDS:
        has_settings |= Q(**{f"{name}__isnull": False})
    keys = ApiKey.objects.filter(has_settings)
    if tenant_ids is not None:
        keys = keys.filter(tenant_id__in=set(tenant_ids))
    return keys.select_related("tenant").order_by("prefix")


def api_keys_by_prefix(*, prefixes: Iterable[str]) -> dict[str, ApiKey]:
    """The keys among `prefixes` that exist, by prefix, with their tenants."""
    keys = ApiKey.objects.filter(prefix__in=set(prefixes)).select_related("tenant")
    return {api_key.prefix: api_key for api_key in keys}
