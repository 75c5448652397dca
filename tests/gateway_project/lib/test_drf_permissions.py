"""gateway_project/lib/drf_permissions.py: every management endpoint needs active staff with
the Django model permission of its action, reads included; the Ops and Finance groups
(tenants migration 0003) hold the right ones."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from tenants.models import ApiKey, Tenant
from tests import factories
from tests.gateway_project.management_api import assert_envelope, json_post, make_staff, session

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway_project.management_api")]


def test_a_staff_user_without_permissions_cannot_list_another_tenants_keys(their_key):
    response = session(make_staff("nobody")).get("/api/v1/tenants/globex/keys/")
    assert_envelope(response, 403, "permission_error", "permission_denied")
    assert their_key.prefix not in response.content.decode()


def test_a_staff_user_without_permissions_cannot_issue_a_key(suspended):
    response = json_post(
        session(make_staff("nobody")), "/api/v1/tenants/globex/keys/", {"name": "x"}
    )
    assert_envelope(response, 403, "permission_error", "permission_denied")
    assert "key" not in response.json()
    assert not ApiKey.objects.exists()


def test_a_staff_user_without_permissions_cannot_unsuspend_a_tenant(suspended):
    response = session(make_staff("nobody")).patch(
        "/api/v1/tenants/globex/", {"status": "active"}, content_type="application/json"
    )
    assert_envelope(response, 403, "permission_error", "permission_denied")
    suspended.refresh_from_db()
    assert suspended.status == Tenant.Status.SUSPENDED


def every_request(key: ApiKey, route_id: int) -> list[tuple[str, str, dict | None]]:
    slug = key.tenant.slug
    return [
        ("get", "/api/v1/tenants/", None),
        ("post", "/api/v1/tenants/", {"slug": "initech", "name": "Initech"}),
        ("get", f"/api/v1/tenants/{slug}/", None),
        ("patch", f"/api/v1/tenants/{slug}/", {"status": "active"}),
        ("put", f"/api/v1/tenants/{slug}/", {"slug": slug, "name": "X", "status": "active"}),
        ("get", f"/api/v1/tenants/{slug}/keys/", None),
        ("post", f"/api/v1/tenants/{slug}/keys/", {"name": "x"}),
        ("get", f"/api/v1/tenants/{slug}/keys/{key.pk}/", None),
        ("post", f"/api/v1/tenants/{slug}/keys/{key.pk}/revoke/", None),
        ("get", "/api/v1/routes/", None),
        ("get", f"/api/v1/routes/{route_id}/", None),
        ("get", "/api/v1/cache/stats", None),
        ("options", "/api/v1/tenants/", None),
    ]


def test_a_staff_user_without_permissions_gets_403_on_every_endpoint(their_key):
    route = factories.make_route("chat", factories.make_model(factories.make_provider()))
    client = session(make_staff("nobody"))
    for method, url, body in every_request(their_key, route.pk):
        kwargs = {"data": body, "content_type": "application/json"} if body else {}
        response = getattr(client, method)(url, **kwargs)
        assert response.status_code == 403, (method, url, response.content)
    their_key.refresh_from_db()
    assert their_key.revoked_at is None
    assert not Tenant.objects.filter(slug="initech").exists()


def test_a_non_staff_user_with_every_permission_is_refused(their_key):
    user = make_staff("outsider", "tenants.view_apikey", "tenants.view_tenant")
    user.is_staff = False
    user.save()
    response = session(user).get("/api/v1/tenants/globex/keys/")
    assert_envelope(response, 403, "permission_error", "permission_denied")


def test_each_action_opens_with_its_own_permission(their_key, suspended):
    listing = session(make_staff("reader", "tenants.view_apikey"))
    assert listing.get("/api/v1/tenants/globex/keys/").status_code == 200

    issuing = session(make_staff("issuer", "tenants.add_apikey"))
    issued = json_post(issuing, "/api/v1/tenants/globex/keys/", {"name": "ci"})
    assert issued.status_code == 201, issued.content
    assert issued.json()["key"].startswith("gwk_")

    unsuspending = session(make_staff("ops", "tenants.change_tenant"))
    response = unsuspending.patch(
        "/api/v1/tenants/globex/", {"status": "active"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    suspended.refresh_from_db()
    assert suspended.status == Tenant.Status.ACTIVE

    revoking = session(make_staff("revoker", "tenants.change_apikey"))
    revoked = json_post(revoking, f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/")
    assert revoked.status_code == 200, revoked.content
    their_key.refresh_from_db()
    assert their_key.revoked_at is not None


def test_revoking_needs_change_apikey_not_add_apikey(their_key):
    client = session(make_staff("issuer", "tenants.add_apikey", "tenants.view_apikey"))
    response = json_post(client, f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/")
    assert_envelope(response, 403, "permission_error", "permission_denied")
    their_key.refresh_from_db()
    assert their_key.revoked_at is None


def test_a_user_with_only_view_permissions_reads_but_cannot_write(their_key, suspended):
    client = session(make_staff("viewer", "tenants.view_tenant", "tenants.view_apikey"))

    assert client.get("/api/v1/tenants/").status_code == 200
    assert client.get("/api/v1/tenants/globex/").json()["status"] == "suspended"
    assert client.get(f"/api/v1/tenants/globex/keys/{their_key.pk}/").status_code == 200

    writes = [
        client.patch(
            "/api/v1/tenants/globex/", {"status": "active"}, content_type="application/json"
        ),
        json_post(client, "/api/v1/tenants/", {"slug": "initech", "name": "Initech"}),
        json_post(client, "/api/v1/tenants/globex/keys/", {"name": "x"}),
        json_post(client, f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/"),
    ]
    assert [response.status_code for response in writes] == [403, 403, 403, 403]
    suspended.refresh_from_db()
    their_key.refresh_from_db()
    assert (suspended.status, their_key.revoked_at) == (Tenant.Status.SUSPENDED, None)
    assert ApiKey.objects.count() == 1


def test_routes_and_cache_stats_need_view_route(db):
    client = session(make_staff("tenants-only", "tenants.view_tenant"))
    assert client.get("/api/v1/routes/").status_code == 403
    assert client.get("/api/v1/cache/stats").status_code == 403

    client = session(make_staff("routes", "routing.view_route"))
    assert client.get("/api/v1/routes/").status_code == 200
    stats = client.get("/api/v1/cache/stats")
    assert stats.status_code == 200, stats.content
    assert {"hits", "misses", "entries"} <= set(stats.json())


def codenames(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
    }


def test_the_migration_creates_the_ops_and_finance_groups():
    ops, finance = codenames("Ops"), codenames("Finance")

    for model in (
        "tenants.tenant",
        "tenants.apikey",
        "providers.provider",
        "providers.providermodel",
        "routing.route",
        "routing.routetarget",
        "billing.budget",
        "billing.ratelimit",
        "audit.redactionrule",
    ):
        app_label, name = model.split(".")
        assert {f"{app_label}.{action}_{name}" for action in ("add", "change", "view")} <= ops
    assert "audit.view_auditevent" in ops
    # Suspend and revoke instead: deleting would take the history with it.
    assert not {"tenants.delete_tenant", "tenants.delete_apikey", "audit.delete_auditevent"} & ops
    assert "audit.change_auditevent" not in ops

    assert {
        "tenants.view_tenant",
        "billing.view_budget",
        "billing.view_budgetalert",
    } <= finance
    # Finance changes only billing's commercial terms (tests/billing/test_terms_permissions.py),
    # adds prices and report files, closes months (tests/billing/test_finance_permissions.py),
    # never sees a
    # key, and never a prompt or a response (billing 0008 took the audit log away from it).
    assert {p for p in finance if not p.split(".")[1].startswith("view_")} <= {
        f"billing.{action}_{model}"
        for action in ("add", "change", "delete")
        for model in ("tenantterms", "priceoverride", "exchangerate")
    } | {"billing.add_priceversion", "billing.add_reportexport", "billing.add_statement"}
    assert not {p for p in finance if "apikey" in p or "managementtoken" in p}
    assert not {p for p in finance if p.startswith("audit.")}


def test_the_ops_group_manages_keys_and_tenants_and_finance_only_reads(their_key, suspended):
    ops = session(make_staff("olga", groups=("Ops",)))
    assert ops.get("/api/v1/tenants/globex/keys/").status_code == 200
    assert json_post(ops, "/api/v1/tenants/globex/keys/", {"name": "ci"}).status_code == 201
    assert ops.get("/api/v1/routes/").status_code == 200

    finance = session(make_staff("fred", groups=("Finance",)))
    assert finance.get("/api/v1/tenants/").status_code == 200
    assert finance.get("/api/v1/tenants/globex/keys/").status_code == 403
    unsuspend = finance.patch(
        "/api/v1/tenants/globex/", {"status": "active"}, content_type="application/json"
    )
    assert unsuspend.status_code == 403

    unsuspend = ops.patch(
        "/api/v1/tenants/globex/", {"status": "active"}, content_type="application/json"
    )
    assert unsuspend.status_code == 200
    revoked = json_post(ops, f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/")
    assert revoked.json()["status"] == "revoked"
