"""Writes for tenants and keys. The admin, commands, the management API and the config
importer all call these.

Rows are saved through the model (never queryset.update() where the proxy's snapshot must
hear of it: post_save is what invalidates it); an update writes only when a value differs.
Route names are checked through `tenants.route_names`, which the routing app fills in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict, Unpack

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Case, QuerySet, Value, When
from django.utils import timezone
from knox.models import get_digest_token
from knox.settings import CONSTANTS as KNOX

from gateway_project.lib.upsert import Upserted, update_fields, upsert
from tenants.keys import generate_key, hash_key, key_prefix
from tenants.models import ApiKey, ManagementToken, Tenant
from tenants.route_names import route_names_visible_to


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


@dataclass(frozen=True)
class IssuedManagementToken:
    token: ManagementToken
    plaintext: str  # shown once; the row holds its digest


class PolicyChanges(TypedDict, total=False):
    """Request limits (UsagePolicy.POLICY_FIELDS); None means no limit at this level."""

    max_prompt_tokens: int | None
    max_output_tokens: int | None
    max_n: int | None
    max_body_bytes: int | None
    max_messages: int | None
    max_depth: int | None


class TenantChanges(PolicyChanges, total=False):
    slug: str
    name: str
    status: str
    metadata: dict[str, Any]
    allowed_routes: Sequence[str]


class ApiKeyChanges(PolicyChanges, total=False):
    name: str
    allowed_routes: Sequence[str]
    expires_at: datetime | None


# A token's last use is written at most this often: the time is for a person deciding
# whether a token is still needed, and a write per management call would be waste.
MANAGEMENT_TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def tenant_create(
    *,
    slug: str,
    name: str,
    status: str = Tenant.Status.ACTIVE,
    metadata: dict[str, Any] | None = None,
    allowed_routes: Sequence[str] = (),
    max_prompt_tokens: int | None = None,
    max_output_tokens: int | None = None,
    max_n: int | None = None,
    max_body_bytes: int | None = None,
    max_messages: int | None = None,
    max_depth: int | None = None,
) -> Tenant:
    """Create a tenant. The policy fields are its keys' request limits (None: no limit);
    `allowed_routes` (empty: every route it can see) is checked by the caller with
    `api_key_routes_validate`, which needs the tenant to exist for its own routes."""
    return Tenant.objects.create(
        slug=slug,
        **_tenant_fields(
            name=name,
            status=status,
            metadata=metadata,
            allowed_routes=allowed_routes,
            policy={
                "max_prompt_tokens": max_prompt_tokens,
                "max_output_tokens": max_output_tokens,
                "max_n": max_n,
                "max_body_bytes": max_body_bytes,
                "max_messages": max_messages,
                "max_depth": max_depth,
            },
        ),
    )


def _tenant_fields(
    *,
    name: str,
    status: str,
    metadata: dict[str, Any] | None,
    allowed_routes: Sequence[str],
    policy: dict[str, int | None],
) -> dict[str, Any]:
    """The stored values of a tenant, shared by create and upsert."""
    return {
        "name": name,
        "status": status,
        "metadata": metadata or {},
        "allowed_routes": list(allowed_routes),
        **policy,
    }


def tenant_upsert(
    *,
    slug: str,
    name: str,
    status: str = Tenant.Status.ACTIVE,
    metadata: dict[str, Any] | None = None,
    allowed_routes: Sequence[str] = (),
    max_prompt_tokens: int | None = None,
    max_output_tokens: int | None = None,
    max_n: int | None = None,
    max_body_bytes: int | None = None,
    max_messages: int | None = None,
    max_depth: int | None = None,
) -> Upserted[Tenant]:
    """Create the tenant `slug` or bring its other fields to these values.

    Saved only when something differs, so an unchanged tenant sends no post_save and
    leaves the proxy's config snapshot alone. A policy field left out means no limit,
    not "keep the current one".
    """
    return upsert(
        Tenant,
        lookup={"slug": slug},
        values=_tenant_fields(
            name=name,
            status=status,
            metadata=metadata,
            allowed_routes=allowed_routes,
            policy={
                "max_prompt_tokens": max_prompt_tokens,
                "max_output_tokens": max_output_tokens,
                "max_n": max_n,
                "max_body_bytes": max_body_bytes,
                "max_messages": max_messages,
                "max_depth": max_depth,
            },
        ),
    )


def tenant_update(*, tenant: Tenant, **changes: Unpack[TenantChanges]) -> Upserted[Tenant]:
    """Bring the fields given to these values (a new slug included). `allowed_routes` is
    checked with `api_key_routes_validate` (ValidationError, code "unknown_route")."""
    values: dict[str, Any] = dict(changes)
    if "allowed_routes" in values:
        values["allowed_routes"] = api_key_routes_validate(
            tenant=tenant, allowed_routes=values["allowed_routes"]
        )
    return update_fields(tenant, values)


def tenant_delete(*, tenant: Tenant) -> None:
    """Delete a tenant with its keys, routes and limits; its audit rows keep its slug."""
    with transaction.atomic():
        tenant.delete()


def tenant_set_status(*, tenant: Tenant, status: str) -> Tenant:
    """Suspend or reactivate a tenant; its keys are refused (or accepted) at once.

    A model save, never queryset.update(): post_save is what tells every gateway process
    to rebuild its snapshot, and update() sends none.
    """
    if status not in Tenant.Status.values:
        raise ValueError(f"Unknown tenant status {status!r}.")
    if tenant.status != status:
        tenant.status = status
        tenant.save(update_fields=["status", "updated_at"])
    return tenant


def api_key_routes_validate(*, tenant: Tenant, allowed_routes: Iterable[str]) -> list[str]:
    """The route names a key of `tenant` is to be limited to, tidied up and checked.

    Blanks and repeats are dropped (the order given is kept). Raises ValidationError
    (code "unknown_route") naming every route the tenant cannot see: a typo here would
    silently lock the key out of the route it was made for. The admin form and the
    management API both call this, before `api_key_issue`, so their errors can sit on
    the field they are about.
    """
    names = list(dict.fromkeys(name.strip() for name in allowed_routes if name.strip()))
    if names:
        known = route_names_visible_to(tenant=tenant, among=names)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValidationError(
                f"Tenant {tenant.slug} has no route named {', '.join(unknown)}.",
                code="unknown_route",
            )
    return names


def api_key_expiry_validate(*, expires_at: datetime | None) -> None:
    """A new key must expire in the future (an existing one may well have expired since)."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("A new key must expire in the future.", code="invalid")


def api_key_issue(
    *,
    tenant: Tenant,
    name: str,
    allowed_routes: Sequence[str] | None = None,
    expires_at: datetime | None = None,
    max_prompt_tokens: int | None = None,
    max_output_tokens: int | None = None,
    max_n: int | None = None,
    max_body_bytes: int | None = None,
    max_messages: int | None = None,
    max_depth: int | None = None,
) -> IssuedKey:
    """Issue a key; the policy fields may only tighten the tenant's (the smaller applies)."""
    plaintext = generate_key()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=key_prefix(plaintext),
        key_hash=hash_key(plaintext),
        allowed_routes=list(allowed_routes or []),
        expires_at=expires_at,
        max_prompt_tokens=max_prompt_tokens,
        max_output_tokens=max_output_tokens,
        max_n=max_n,
        max_body_bytes=max_body_bytes,
        max_messages=max_messages,
        max_depth=max_depth,
    )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def api_key_update(*, api_key: ApiKey, **changes: Unpack[ApiKeyChanges]) -> Upserted[ApiKey]:
    """Bring the fields given to these values. `allowed_routes` is checked like the
    issuing form checks it; an expiry may be in the past (the key may have expired since).
    The tenant, prefix and hash of a key never change."""
    values: dict[str, Any] = dict(changes)
    if "allowed_routes" in values:
        values["allowed_routes"] = api_key_routes_validate(
            tenant=api_key.tenant, allowed_routes=values["allowed_routes"]
        )
    return update_fields(api_key, values)


def api_key_delete(*, api_key: ApiKey) -> None:
    """Delete a key outright (revoking keeps it on record: usually what is wanted)."""
    api_key.delete()


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_keys_touch(*, last_used: dict[int, datetime]) -> None:
    """Record when keys were last used; called by the audit writer in batches.

    One UPDATE however many keys (a CASE on the id): with many tenants a batch touches many
    keys, and a statement per key made the writer's cost grow with them. A queryset update
    sends no signals, so this never invalidates the config snapshot.
    """
    if not last_used:
        return
    ApiKey.objects.filter(pk__in=list(last_used)).update(
        last_used_at=Case(
            *(When(pk=key_id, then=Value(when)) for key_id, when in last_used.items()),
            output_field=models.DateTimeField(),
        )
    )


def management_token_issue(
    *, user: AbstractBaseUser, expires_at: datetime, name: str = ""
) -> IssuedManagementToken:
    """Issue a management API token for an active staff user, expiring at `expires_at`.

    There are no tokens without an expiry: a forgotten one in an old script or backup would
    otherwise work for ever. Only the digest is stored (knox hashes, we keep the row).
    """
    if not (user.is_active and getattr(user, "is_staff", False)):
        raise ValidationError(
            "Only an active staff user may hold a management token.", code="invalid"
        )
    if expires_at <= timezone.now():
        raise ValidationError("A management token must expire in the future.", code="invalid")
    digest, plaintext = get_digest_token()
    # Not knox's manager create(), which takes a duration from now rather than a date.
    token = ManagementToken(
        digest=digest,
        token_key=plaintext[: KNOX.TOKEN_KEY_LENGTH],
        user=user,
        expiry=expires_at,
        name=name,
    )
    token.save(force_insert=True)
    return IssuedManagementToken(token=token, plaintext=plaintext)


def management_tokens_revoke(*, tokens: QuerySet[ManagementToken]) -> int:
    """Revoke tokens by deleting them (what knox checks is whether the row exists); returns
    how many there were."""
    deleted, _ = tokens.delete()
    return deleted


def management_token_touch(*, token: ManagementToken, now: datetime) -> None:
    """Record that `token` was just used, at most once per MANAGEMENT_TOKEN_TOUCH_INTERVAL.

    A queryset update, so a concurrent revoke (a delete) is not undone by a save.
    """
    if token.last_used_at is not None and now - token.last_used_at < (
        MANAGEMENT_TOKEN_TOUCH_INTERVAL
    ):
        return
    ManagementToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


def api_key_configure(
    *,
    api_key: ApiKey,
    name: str | None = None,
    allowed_routes: Sequence[str] = (),
    max_prompt_tokens: int | None = None,
    max_output_tokens: int | None = None,
    max_n: int | None = None,
    max_body_bytes: int | None = None,
    max_messages: int | None = None,
    max_depth: int | None = None,
) -> Upserted[ApiKey]:
    """Bring an issued key's settings to these values (configuration import). A policy
    field left out means no limit; `name` None keeps the current name. Saved only when
    something differs, so an unchanged key leaves the proxy's snapshot alone."""
    values: ApiKeyChanges = {
        "allowed_routes": allowed_routes,
        "max_prompt_tokens": max_prompt_tokens,
        "max_output_tokens": max_output_tokens,
        "max_n": max_n,
        "max_body_bytes": max_body_bytes,
        "max_messages": max_messages,
        "max_depth": max_depth,
    }
    if name is not None:
        values["name"] = name
    return api_key_update(api_key=api_key, **values)
