"""Writes for tenants and keys. The admin, commands and APIs all call these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from tenants.keys import generate_key, hash_key, key_prefix
from tenants.models import ApiKey, Tenant


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


def tenant_create(
    *, slug: str, name: str, status: str = Tenant.Status.ACTIVE, metadata: dict | None = None
) -> Tenant:
    return Tenant.objects.create(slug=slug, name=name, status=status, metadata=metadata or {})


def api_key_issue(
    *,
    tenant: Tenant,
    name: str,
    allowed_routes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    plaintext = generate_key()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=key_prefix(plaintext),
        key_hash=hash_key(plaintext),
        allowed_routes=allowed_routes or [],
        expires_at=expires_at,
    )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_keys_touch(*, last_used: dict[int, datetime]) -> None:
    """Record when keys were last used; called by the audit writer in batches.

    A queryset update sends no signals, so this never invalidates the config snapshot.
    """
    with transaction.atomic():
        for key_id, when in last_used.items():
            ApiKey.objects.filter(pk=key_id).update(last_used_at=when)
