"""The tenant and key services every caller shares, and the key status they agree on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from gateway_project.lib.upsert import Change
from tenants.models import ApiKey, Tenant, UsagePolicy
from tenants.selectors import api_key_status_q
from tenants.services import (
    api_key_expiry_validate,
    api_key_issue,
    api_key_routes_validate,
    api_key_update,
    tenant_create,
    tenant_set_status,
    tenant_update,
    tenant_upsert,
)
from tests import factories

pytestmark = pytest.mark.django_db


# --- tenant_upsert ---------------------------------------------------------------------------


def test_tenant_upsert_creates_then_updates_only_what_differs(saved):
    created = tenant_upsert(slug="initech", name="Initech", status="active", metadata={})
    assert created.change == Change.CREATED
    assert created.instance.pk is not None

    saved.clear()
    again = tenant_upsert(slug="initech", name="Initech", status="active", metadata={})
    assert again.change == Change.UNCHANGED
    assert again.instance.pk == created.instance.pk
    assert saved == []  # nothing written, so the snapshot is not invalidated

    renamed = tenant_upsert(
        slug="initech", name="Initech Corp", status="suspended", metadata={"tier": "gold"}
    )
    assert renamed.change == Change.UPDATED
    assert saved == ["Tenant"]
    tenant = Tenant.objects.get(slug="initech")
    assert (tenant.name, tenant.status, tenant.metadata) == (
        "Initech Corp",
        "suspended",
        {"tier": "gold"},
    )


def test_tenant_upsert_validates_before_writing():
    with pytest.raises(ValidationError) as caught:
        tenant_upsert(slug="initech", name="Initech", status="sleeping", metadata={})
    assert "status" in caught.value.message_dict
    assert not Tenant.objects.exists()


POLICY = {
    "max_prompt_tokens": 8000,
    "max_output_tokens": 1024,
    "max_n": 2,
    "max_body_bytes": 65536,
    "max_messages": 50,
    "max_depth": 16,
}


def policy_of(row: UsagePolicy) -> dict[str, int | None]:
    return {name: getattr(row, name) for name in UsagePolicy.POLICY_FIELDS}


def test_the_policy_keywords_are_exactly_the_policy_fields():
    assert set(POLICY) == set(UsagePolicy.POLICY_FIELDS)


def test_tenant_create_takes_the_policy_and_routes_in_one_save(saved):
    tenant = tenant_create(
        slug="initech", name="Initech", allowed_routes=["chat", "echo"], **POLICY
    )

    assert saved == ["Tenant"]  # one write, not a create and then a second save
    tenant.refresh_from_db()
    assert policy_of(tenant) == POLICY
    assert tenant.allowed_routes == ["chat", "echo"]


def test_tenant_create_defaults_to_no_limits_and_every_route():
    tenant = tenant_create(slug="initech", name="Initech")

    tenant.refresh_from_db()
    assert all(value is None for value in policy_of(tenant).values())
    assert tenant.allowed_routes == []


def test_tenant_upsert_sets_the_policy_and_routes_and_writes_only_what_differs(saved):
    created = tenant_upsert(slug="initech", name="Initech", allowed_routes=("chat",), **POLICY)
    assert created.change == Change.CREATED
    assert policy_of(created.instance) == POLICY
    assert created.instance.allowed_routes == ["chat"]

    saved.clear()
    again = tenant_upsert(slug="initech", name="Initech", allowed_routes=["chat"], **POLICY)
    assert again.change == Change.UNCHANGED
    assert saved == []

    tighter = tenant_upsert(
        slug="initech", name="Initech", allowed_routes=["chat"], **(POLICY | {"max_n": 1})
    )
    assert tighter.change == Change.UPDATED
    assert saved == ["Tenant"]
    assert Tenant.objects.get(slug="initech").max_n == 1


def test_tenant_upsert_without_a_policy_means_no_limits():
    tenant_upsert(slug="initech", name="Initech", allowed_routes=["chat"], **POLICY)

    result = tenant_upsert(slug="initech", name="Initech")

    assert result.change == Change.UPDATED
    tenant = Tenant.objects.get(slug="initech")
    assert all(value is None for value in policy_of(tenant).values())
    assert tenant.allowed_routes == []


def test_tenant_upsert_validates_the_policy_before_writing():
    with pytest.raises(ValidationError) as caught:
        tenant_upsert(slug="initech", name="Initech", max_n=-1)
    assert "max_n" in caught.value.message_dict
    assert not Tenant.objects.exists()


def test_api_key_issue_takes_the_policy_in_one_save(acme, saved):
    issued = api_key_issue(tenant=acme, name="ci", allowed_routes=("chat",), **POLICY)

    assert saved == ["ApiKey"]
    api_key = ApiKey.objects.get(pk=issued.api_key.pk)
    assert policy_of(api_key) == POLICY
    assert api_key.allowed_routes == ["chat"]
    assert all(value is None for value in policy_of(factories.make_key(acme).api_key).values())


# --- tenant_set_status -----------------------------------------------------------------------


def test_tenant_set_status_saves_through_the_model_so_the_snapshot_is_rebuilt(acme, saved):
    before = acme.updated_at

    tenant_set_status(tenant=acme, status=Tenant.Status.SUSPENDED)

    assert saved == ["Tenant"]
    acme.refresh_from_db()
    assert acme.status == Tenant.Status.SUSPENDED
    assert acme.updated_at > before


def test_tenant_set_status_writes_nothing_when_the_status_is_already_right(acme, saved):
    tenant_set_status(tenant=acme, status=Tenant.Status.ACTIVE)
    assert saved == []


def test_tenant_set_status_refuses_an_unknown_status(acme, saved):
    with pytest.raises(ValueError, match="sleeping"):
        tenant_set_status(tenant=acme, status="sleeping")
    assert saved == []


# --- key validation --------------------------------------------------------------------------


def test_route_names_are_tidied_and_may_be_global_or_the_tenants_own(acme, globex):
    model = factories.make_model(factories.make_provider())
    factories.make_route("chat", model)
    factories.make_route("acme-only", model, tenant=acme)

    names = api_key_routes_validate(tenant=acme, allowed_routes=[" chat", "acme-only", "", "chat "])

    assert names == ["chat", "acme-only"]
    assert api_key_routes_validate(tenant=acme, allowed_routes=[]) == []


def test_route_names_of_another_tenant_or_none_at_all_are_refused(acme, globex):
    factories.make_route(
        "globex-only", factories.make_model(factories.make_provider()), tenant=globex
    )

    with pytest.raises(ValidationError) as caught:
        api_key_routes_validate(tenant=acme, allowed_routes=["globex-only", "nope"])

    assert caught.value.code == "unknown_route"
    assert caught.value.messages == ["Tenant acme has no route named globex-only, nope."]


def test_a_new_key_must_expire_in_the_future():
    api_key_expiry_validate(expires_at=None)
    api_key_expiry_validate(expires_at=timezone.now() + timedelta(minutes=1))
    with pytest.raises(ValidationError, match="must expire in the future"):
        api_key_expiry_validate(expires_at=timezone.now() - timedelta(minutes=1))


# --- ApiKey.status ---------------------------------------------------------------------------


def test_key_status_is_derived_and_the_query_filter_agrees(acme):
    now = timezone.now()
    active = factories.make_key(acme, name="active").api_key
    later = factories.make_key(acme, name="later", expires_at=now + timedelta(days=1)).api_key
    expired = factories.make_key(acme, name="expired").api_key
    expired.expires_at = now - timedelta(minutes=1)
    expired.save()
    revoked = factories.make_key(acme, name="revoked").api_key
    revoked.revoked_at = now
    revoked.expires_at = now - timedelta(minutes=1)  # revoked wins over expired
    revoked.save()

    expected = {
        ApiKey.Status.ACTIVE: {active, later},
        ApiKey.Status.EXPIRED: {expired},
        ApiKey.Status.REVOKED: {revoked},
    }
    for status, keys in expected.items():
        assert {key for key in ApiKey.objects.all() if key.status == status} == keys
        assert set(ApiKey.objects.filter(api_key_status_q(status))) == keys
    assert [key.is_usable for key in (active, later, expired, revoked)] == [
        True,
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError):
        api_key_status_q("lost")


# --- updates (the admin's change forms, the management API) ---------------------------------


def test_api_key_update_checks_route_names_and_writes_only_a_change(acme, globex, saved):
    factories.make_route("theirs", factories.make_model(factories.make_provider()), tenant=globex)
    api_key = factories.make_key(acme).api_key
    saved.clear()

    with pytest.raises(ValidationError) as refused:
        api_key_update(api_key=api_key, allowed_routes=["theirs"])
    same = api_key_update(api_key=api_key, name=api_key.name, max_n=None)
    tightened = api_key_update(api_key=api_key, max_n=1)

    assert refused.value.code == "unknown_route"
    assert (same.change, tightened.change) == (Change.UNCHANGED, Change.UPDATED)
    assert saved == ["ApiKey"]


def test_tenant_update_may_rename_the_slug_and_checks_route_names(acme):
    renamed = tenant_update(tenant=acme, slug="acme-two", name="Acme Two")

    assert renamed.change == Change.UPDATED
    assert Tenant.objects.get(pk=acme.pk).slug == "acme-two"
    with pytest.raises(ValidationError):
        tenant_update(tenant=acme, allowed_routes=["nowhere"])
