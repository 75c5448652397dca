"""The management API mounted for its tests (their `urls` mark names this module), and the
staff accounts and clients they call it with."""

from __future__ import annotations

import base64
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import include, path
from django.utils import timezone

from tenants.services import management_token_issue

# Mounted here as the project mounts it, so these tests do not depend on urls.py.
urlpatterns = [path("api/v1/", include("gateway_project.rest_urls"))]

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


def basic(username: str, password: str) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    }
