"""Who may use the management API: staff with Django model permissions (reads included),
by hashed, expiring token or by session with CSRF, never HTTP Basic; the Ops and Finance
groups; the root."""

from __future__ import annotations

import base64
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, include, path
from django.utils import timezone
from rest_framework.authentication import SessionAuthentication

from gateway_project import rest_urls
from gateway_project.lib.drf_permissions import ModelPermissions
from tenants.models import ApiKey, ManagementToken, Tenant
from tenants.rest_auth import ManagementTokenAuthentication
from tenants.services import management_token_issue
from tests import factories

# Mounted here as the project mounts it, so these tests do not depend on urls.py.
urlpatterns = [path("api/v1/", include("gateway_project.rest_urls"))]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PASSWORD = "correct horse battery"


def make_staff(username: str, *permissions: str, groups: tuple[str, ...] = ()):
    """An active staff account holding exactly `permissions` ("app.codename") and `groups`."""
    user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return user


def session(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def issue_token(user, *, days: int = 30) -> str:
    return management_token_issue(
        user=user, expires_at=timezone.now() + timedelta(days=days)
    ).plaintext


def token_client(user) -> Client:
    return Client(headers={"Authorization": f"Token {issue_token(user)}"})


def assert_envelope(response, status: int, type_: str, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    if code is not None:
        assert error["code"] == code
    return error


def json_post(client: Client, url: str, body: dict | None = None):
    return client.post(url, body or {}, content_type="application/json")


@pytest.fixture
def suspended(db) -> Tenant:
    return factories.make_tenant("globex", status=Tenant.Status.SUSPENDED)


@pytest.fixture
def their_key(suspended) -> ApiKey:
    return factories.make_key(suspended).api_key


# --- item 7: model permissions ----------------------------------------------------------------


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


def test_a_bad_cache_stats_tenant_id_is_a_400_in_the_envelope(db):
    client = session(make_staff("routes", "routing.view_route"))
    error = assert_envelope(
        client.get("/api/v1/cache/stats?tenant_id=abc"), 400, "invalid_request_error", "invalid"
    )
    assert error["param"] == "tenant_id"


def test_every_management_view_uses_model_permissions_and_no_basic_auth():
    def views(patterns: list) -> list[type]:
        found: list[type] = []
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                found += views(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                found.append(pattern.callback.cls)  # type: ignore[attr-defined]
        return found

    found = views(rest_urls.urlpatterns)
    assert len(found) >= 6
    for view in found:
        assert tuple(view.authentication_classes) == (
            ManagementTokenAuthentication,
            SessionAuthentication,
        )
        assert any(issubclass(cls, ModelPermissions) for cls in view.permission_classes), view


# --- the Ops and Finance groups -------------------------------------------------------------


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

    assert finance == {
        "tenants.view_tenant",
        "billing.view_budget",
        "billing.view_budgetalert",
        "audit.view_auditevent",
    }


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


# --- item 8: no HTTP Basic, tokens for scripts, session + CSRF for browsers ---------------------


def basic(username: str, password: str) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    }


def test_an_anonymous_caller_gets_a_401_envelope_without_a_basic_challenge(db):
    response = Client().get("/api/v1/tenants/")
    assert_envelope(response, 401, "invalid_request_error", "not_authenticated")
    assert "basic" not in response.headers.get("WWW-Authenticate", "").lower()


def test_basic_credentials_are_not_accepted(db):
    make_staff("ops", "tenants.view_tenant")
    response = Client().get("/api/v1/tenants/", headers=basic("ops", PASSWORD))
    assert_envelope(response, 401, "invalid_request_error", "not_authenticated")
    assert "basic" not in response.headers.get("WWW-Authenticate", "").lower()


def test_a_cross_site_form_post_with_remembered_basic_credentials_does_not_revoke(their_key):
    # What a browser sends once it has answered a Basic challenge: the credentials again,
    # on a form posted from any other site.
    make_staff("ops", "tenants.change_apikey", "tenants.view_apikey")
    browser = Client(enforce_csrf_checks=True)
    response = browser.post(
        f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/",
        headers={**basic("ops", PASSWORD), "Origin": "https://evil.example"},
    )
    assert response.status_code in (401, 403)
    their_key.refresh_from_db()
    assert their_key.revoked_at is None


def test_a_cross_site_form_post_with_the_session_cookie_but_no_csrf_token_is_refused(their_key):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_staff("ops", "tenants.change_apikey", "tenants.view_apikey"))
    response = browser.post(
        f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/",
        {"anything": "x"},  # form-encoded, as an HTML form on another site would send it
        headers={"Origin": "https://evil.example", "Referer": "https://evil.example/"},
    )
    error = assert_envelope(response, 403, "permission_error", "permission_denied")
    assert "CSRF" in error["message"]
    their_key.refresh_from_db()
    assert their_key.revoked_at is None


def test_the_same_session_with_its_csrf_token_may_revoke(their_key):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_staff("ops", "tenants.change_apikey", "tenants.view_apikey"))
    browser.get("/api/v1/tenants/globex/keys/", headers={"Accept": "text/html"})
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200, response.content
    their_key.refresh_from_db()
    assert their_key.revoked_at is not None


def test_token_authentication_works_for_a_user_with_permissions(suspended):
    user = make_staff("automation", "tenants.view_apikey", "tenants.add_apikey")
    out = StringIO()
    call_command("management_token_issue", "--user", "automation", "--days", "90", stdout=out)
    token = out.getvalue().strip()
    assert token.startswith("gwm_")
    assert "\n" not in token  # the token and nothing else, for TOKEN=$(manage.py ...)

    # No cookie, no CSRF token: a token is not something a browser sends by itself.
    client = Client(enforce_csrf_checks=True, headers={"Authorization": f"Token {token}"})
    assert client.get("/api/v1/tenants/globex/keys/").status_code == 200
    issued = json_post(client, "/api/v1/tenants/globex/keys/", {"name": "ci"})
    assert issued.status_code == 201, issued.content
    assert ApiKey.objects.filter(tenant=suspended, name="ci").exists()
    stored = ManagementToken.objects.get(user=user)
    assert stored.last_used_at is not None
    assert timedelta(days=89) < stored.expiry - timezone.now() <= timedelta(days=90)


def every_stored_value() -> list[str]:
    """Every value of every column of every table, as text: where a leaked token could be."""
    values: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # table names from introspection
            values += [str(value) for row in cursor.fetchall() for value in row]
    return values


def test_it_stores_a_token_only_as_a_digest(db):
    token = issue_token(make_staff("automation", "tenants.view_tenant"))

    values = every_stored_value()
    assert not [value for value in values if token in value]
    stored = ManagementToken.objects.get()
    assert stored.digest != token and len(stored.digest) == 128  # SHA-512, hex
    # Only the lookup prefix is kept in the clear: far too short to be used as the token.
    assert token.startswith(stored.token_key) and len(stored.token_key) < len(token) // 4


def test_it_rejects_an_expired_token_with_a_401_envelope(db):
    user = make_staff("automation", "tenants.view_tenant")
    client = token_client(user)
    assert client.get("/api/v1/tenants/").status_code == 200
    ManagementToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))

    assert_envelope(
        client.get("/api/v1/tenants/"), 401, "invalid_request_error", "authentication_failed"
    )


def test_it_rejects_a_revoked_token_with_a_401_envelope(db):
    client = token_client(make_staff("automation", "tenants.view_tenant"))
    assert client.get("/api/v1/tenants/").status_code == 200

    out = StringIO()
    call_command("management_token_revoke", "--user", "automation", stdout=out)

    assert "Revoked 1 " in out.getvalue()
    assert_envelope(
        client.get("/api/v1/tenants/"), 401, "invalid_request_error", "authentication_failed"
    )
    assert not ManagementToken.objects.exists()


def test_it_rejects_a_token_whose_user_is_no_longer_staff(db):
    user = make_staff("demoted", "tenants.view_tenant")
    client = token_client(user)
    user.is_staff = False
    user.save()
    assert_envelope(
        client.get("/api/v1/tenants/"), 401, "invalid_request_error", "authentication_failed"
    )


def test_it_rejects_a_token_header_that_is_not_utf8_with_a_401(db):
    response = Client().get("/api/v1/tenants/", HTTP_AUTHORIZATION="Token gwm_\xe9\xe9")
    assert_envelope(response, 401, "invalid_request_error", "authentication_failed")


def test_a_token_without_permissions_gets_403_and_a_wrong_token_401(suspended):
    client = token_client(make_staff("nobody"))
    assert_envelope(
        client.get("/api/v1/tenants/globex/keys/"), 403, "permission_error", "permission_denied"
    )
    wrong = Client(headers={"Authorization": "Token not-a-real-token"})
    assert_envelope(
        wrong.get("/api/v1/tenants/"), 401, "invalid_request_error", "authentication_failed"
    )


def test_an_inactive_users_token_is_refused(db):
    user = make_staff("gone", "tenants.view_tenant")
    client = token_client(user)
    user.is_active = False
    user.save()
    assert_envelope(client.get("/api/v1/tenants/"), 401, "invalid_request_error")


# --- item 18: the API root --------------------------------------------------------------------


def test_the_api_root_lists_the_endpoints_for_a_staff_user(db):
    client = token_client(make_staff("nobody"))
    response = client.get("/api/v1/")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "tenants": "http://testserver/api/v1/tenants/",
        "routes": "http://testserver/api/v1/routes/",
        "cache-stats": "http://testserver/api/v1/cache/stats",
        "tenant-keys": "http://testserver/api/v1/tenants/{slug}/keys/",
    }


def test_the_api_root_is_browsable_for_a_staff_session(db):
    response = session(make_staff("nobody")).get("/api/v1/", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert b"/api/v1/tenants/" in response.content


def test_the_api_root_refuses_anonymous_and_non_staff_callers(db):
    assert_envelope(Client().get("/api/v1/"), 401, "invalid_request_error", "not_authenticated")
    user = get_user_model().objects.create_user("eve", password=PASSWORD)
    assert_envelope(session(user).get("/api/v1/"), 403, "permission_error", "permission_denied")
