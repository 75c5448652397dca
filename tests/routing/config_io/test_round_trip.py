"""Export, wipe, import: every kind of configuration object comes back exactly, every field."""

from __future__ import annotations

import pytest

from audit.models import RedactionRule
from billing.models import Budget, RateLimit, Scope
from providers.models import Provider, ProviderModel
from routing.config_io import config_dump, config_export, config_import
from routing.models import Route, RouteTarget
from tenants.models import ApiKey, Tenant, UsagePolicy
from tests.routing.config_io.support import EVERYTHING, configure_keys, load

pytestmark = pytest.mark.django_db


def _natural(instance: object) -> object:
    """A row's identity that survives a wipe and re-import (ids do not)."""
    if instance is None:
        return None
    if isinstance(instance, Tenant):
        return instance.slug
    if isinstance(instance, ApiKey):
        return instance.prefix
    if isinstance(instance, Provider):
        return instance.name
    if isinstance(instance, ProviderModel):
        return (instance.provider.name, instance.name)
    if isinstance(instance, Route):
        return (instance.tenant.slug if instance.tenant_id else None, instance.name)
    raise AssertionError(f"no natural key for {instance!r}")


# Not configuration: bookkeeping, or a key's lifecycle (keys are issued, not imported).
_NOT_CONFIG = {
    "id", "created_at", "updated_at", "key_hash", "expires_at", "revoked_at", "last_used_at",
}  # fmt: skip


def configuration_rows() -> dict[str, list[tuple]]:
    """Every configuration row in the database, every field (ids and foreign keys as
    natural keys), sorted: two databases with equal snapshots are configured alike.
    Fields are listed from the models, so a field added later is covered too."""
    snapshot: dict[str, list[tuple]] = {}
    for model in (
        Provider, ProviderModel, Tenant, ApiKey, Route, RouteTarget, RateLimit, Budget,
        RedactionRule,
    ):  # fmt: skip
        rows = []
        for row in model.objects.all():
            values = []
            for field in model._meta.concrete_fields:
                if field.name in _NOT_CONFIG:
                    continue
                value = getattr(row, field.name)
                if field.is_relation:
                    value = _natural(value)
                values.append((field.name, repr(value)))
            rows.append(tuple(values))
        snapshot[model.__name__] = sorted(rows)
    return snapshot


def _wipe_configuration() -> None:
    """Everything an import can write, gone or back to its defaults. Tenants and keys stay
    (deleting a tenant deletes its keys, which no file can bring back): they are reset."""
    RateLimit.objects.all().delete()
    Budget.objects.all().delete()
    Route.objects.all().delete()
    Provider.objects.all().delete()
    RedactionRule.objects.all().delete()
    policy_defaults = dict.fromkeys(UsagePolicy.POLICY_FIELDS)
    Tenant.objects.update(
        name="reset", status=Tenant.Status.ACTIVE, metadata={}, allowed_routes=[],
        **policy_defaults,
    )  # fmt: skip
    # A key's name is a label: an export carries those of the keys it lists, no more.
    ApiKey.objects.update(allowed_routes=[], **policy_defaults)


def test_export_wipe_import_reproduces_every_kind_of_object_exactly() -> None:
    config_import(data=load(EVERYTHING))
    configure_keys()
    before = configuration_rows()
    assert {scope for scope in RateLimit.objects.values_list("scope", flat=True)} == set(Scope)
    assert RateLimit.objects.filter(scope=Scope.TENANT).exclude(model_name="").exists()
    first = config_dump(config_export())

    _wipe_configuration()
    assert configuration_rows() != before
    config_import(data=load(first))

    assert configuration_rows() == before
    assert config_dump(config_export()) == first
    assert not config_import(data=load(first)).changed
