"""API key authentication on the proxy path, served from the tenant snapshot (no ORM once a
key has been seen)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DatabaseError
from django.http import HttpRequest

from gateway_project.lib import errors, logs
from gateway_project.lib.errors import GatewayError
from tenants.keys import key_prefix, looks_like_key, matches
from tenants.snapshot import KeyEntry, TenantEntry, TenantSnapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    key: KeyEntry
    tenant: TenantEntry


def presented_key(request: HttpRequest) -> str | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = request.headers.get("x-api-key", "").strip()
    return value or None


def presented_prefix(plaintext: str | None) -> str:
    """The public part of a presented key, safe to put on an audit row."""
    if plaintext and looks_like_key(plaintext):
        return key_prefix(plaintext)
    return ""


async def authenticate(tenancy: TenantSnapshot, request: HttpRequest) -> Caller:
    """Identify the caller or raise the contract's 401/403.

    Revocation, expiry and suspension are read from the snapshot, which every process
    refreshes within GATEWAY_SNAPSHOT_CHECK_SECONDS of the change. A key's first use in a
    snapshot reads that one key from the database (tenants.snapshot.KeyDirectory).
    """
    plaintext = presented_key(request)
    if plaintext is None:
        raise errors.invalid_api_key(
            "Missing API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
        )
    try:
        entry = (
            await tenancy.keys.aget(key_prefix(plaintext)) if looks_like_key(plaintext) else None
        )
    except DatabaseError:
        logger.exception("API key lookup failed")
        raise GatewayError(
            503,
            "The gateway cannot check API keys right now (its database is unreachable); "
            "try again shortly.",
            type="api_error",
            code="service_unavailable",
            outcome="error",
        ) from None
    if entry is None or not matches(plaintext, entry.key_hash):
        raise errors.invalid_api_key("Incorrect API key provided.")
    if entry.revoked:
        raise errors.invalid_api_key("This API key has been revoked.")
    if entry.expires_at is not None and entry.expires_at <= datetime.now(UTC):
        raise errors.invalid_api_key("This API key has expired.")
    tenant = tenancy.tenants.get(entry.tenant_id)
    if tenant is not None:
        logs.note(tenant=tenant.slug)  # on every log line of the request from here on
    if tenant is None or not tenant.active:
        raise errors.permission_denied("This tenant is suspended.", code="tenant_suspended")
    claimed = request.headers.get("x-tenant-id")
    if claimed is not None and claimed not in (tenant.slug, str(tenant.id)):
        raise errors.permission_denied(
            "The x-tenant-id header does not match the tenant of this API key.",
            code="tenant_mismatch",
        )
    return Caller(key=entry, tenant=tenant)
