"""Management API tokens: issued and revoked only through tenants.services (commands and
admin alike), stored as a digest, always expiring, their last use recorded."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from knox.crypto import hash_token

from tenants.models import ManagementToken
from tenants.services import (
    MANAGEMENT_TOKEN_TOUCH_INTERVAL,
    management_token_issue,
    management_token_touch,
)

pytestmark = pytest.mark.django_db


def staff(username: str = "alice", **extra: object):
    return get_user_model().objects.create_user(username, is_staff=True, **extra)


def issue(*args: str) -> str:
    out = StringIO()
    call_command("management_token_issue", *args, stdout=out)
    return out.getvalue()


def test_the_issue_command_prints_only_the_token_and_stores_its_digest() -> None:
    user = staff()

    out = issue("--user", "alice", "--days", "7", "--name", "nightly export")

    token = out.strip()
    assert out == token + "\n"
    stored = ManagementToken.objects.get(user=user)
    assert stored.digest == hash_token(token)
    assert stored.name == "nightly export"
    assert timedelta(days=6, hours=23) < stored.expiry - timezone.now() <= timedelta(days=7)
    assert stored.last_used_at is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--user", "nobody"), "No user named 'nobody'"),
        (("--user", "alice", "--days", "0"), "--days must be a positive"),
        (("--user", "bob"), "active staff"),
        (("--user", "carol"), "active staff"),
    ],
)
def test_the_issue_command_refuses_unknown_users_non_staff_and_no_expiry(args, message) -> None:
    staff("alice")
    get_user_model().objects.create_user("bob")  # not staff
    staff("carol", is_active=False)

    with pytest.raises(CommandError, match=message):
        issue(*args)
    assert not ManagementToken.objects.exists()


def test_the_service_refuses_an_expiry_in_the_past() -> None:
    with pytest.raises(ValidationError, match="expire in the future"):
        management_token_issue(user=staff(), expires_at=timezone.now() - timedelta(seconds=1))


def test_the_revoke_command_revokes_every_token_of_that_user_only() -> None:
    alice, bob = staff("alice"), staff("bob")
    in_a_week = timezone.now() + timedelta(days=7)
    for user in (alice, alice, bob):
        management_token_issue(user=user, expires_at=in_a_week)

    out = StringIO()
    call_command("management_token_revoke", "--user", "alice", stdout=out)

    assert out.getvalue().strip() == "Revoked 2 management token(s) of alice."
    assert list(ManagementToken.objects.values_list("user__username", flat=True)) == ["bob"]


def test_the_last_use_is_written_at_most_once_per_interval(django_assert_num_queries) -> None:
    token = management_token_issue(
        user=staff(), expires_at=timezone.now() + timedelta(days=1)
    ).token
    now = timezone.now()

    with django_assert_num_queries(1):
        management_token_touch(token=token, now=now)
    with django_assert_num_queries(0):
        management_token_touch(token=token, now=now + MANAGEMENT_TOKEN_TOUCH_INTERVAL / 2)
    later = now + MANAGEMENT_TOKEN_TOUCH_INTERVAL * 2
    with django_assert_num_queries(1):
        management_token_touch(token=token, now=later)
    token.refresh_from_db()
    assert token.last_used_at == later


def test_the_admin_lists_tokens_without_their_digest_and_revokes_through_the_service(
    admin_client: Client,
) -> None:
    token = management_token_issue(
        user=staff(), name="ci", expires_at=timezone.now() + timedelta(days=1)
    ).token

    listing = admin_client.get(reverse("admin:tenants_managementtoken_changelist"))
    assert listing.status_code == 200
    assert token.token_key in listing.content.decode()
    # The digest is the primary key (in links and checkboxes) but never a column.
    assert "column-digest" not in listing.content.decode()
    assert "column-token_key" in listing.content.decode()
    assert admin_client.get(reverse("admin:tenants_managementtoken_add")).status_code == 403
    change = admin_client.get(reverse("admin:tenants_managementtoken_change", args=[token.pk]))
    assert change.status_code == 200
    assert b'name="name"' not in change.content  # read-only: nothing to edit

    response = admin_client.post(
        reverse("admin:tenants_managementtoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    assert not ManagementToken.objects.exists()
