"""tenants/rest_auth.py: management tokens authenticate scripts (no cookie, no CSRF token),
are stored only as a digest, and stop working once expired, revoked, or their user is no
longer active staff."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from tenants.models import ApiKey, ManagementToken, Tenant
from tests import factories
from tests.gateway_project.management_api import (
    assert_envelope,
    issue_token,
    json_post,
    make_staff,
    token_client,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway_project.management_api")]


@pytest.fixture
def suspended(db) -> Tenant:
    return factories.make_tenant("globex", status=Tenant.Status.SUSPENDED)


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
