"""The cache statistics endpoint (routing/cache/api.py)."""

from __future__ import annotations

import orjson
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.urls import resolve
from rest_framework.test import APIRequestFactory, force_authenticate

from routing import cache
from routing.cache import api as cache_api
from tests.routing.cache.support import body, completion, new_id, route

# --- the stats endpoint and the admin ----------------------------------------------------


def api_request(user: object, **params: object):
    """A request to the stats view, signed in as `user` (None: anonymous)."""
    request = APIRequestFactory().get("/api/v1/cache/stats", params)
    if user is not None:
        force_authenticate(request, user=user)
    return request


def test_the_stats_endpoint_answers_staff_with_the_route_view_permission():
    r, tenant = route(), new_id()
    async_to_sync(cache.store)(r, tenant, body(), completion())
    async_to_sync(cache.lookup)(r, tenant, body())
    # A superuser holds every permission (has_perms needs no database for one).
    staff = User(username="ops", is_staff=True, is_active=True, is_superuser=True)

    response = cache_api.CacheStatsView.as_view()(api_request(staff, tenant_id=tenant))

    assert response.status_code == 200
    data = orjson.loads(response.rendered_content)
    assert data["hits"] == 1 and data["entries"] == 1 and data["tenant_id"] == tenant
    assert set(data) >= {"hits", "misses", "semantic_hits", "hit_rate", "stores", "entries"}


@pytest.mark.parametrize(
    ("user", "status", "code"),
    [
        (None, 401, "not_authenticated"),
        (User(username="dev", is_staff=False, is_active=True), 403, "permission_denied"),
    ],
)
def test_the_stats_endpoint_refuses_anyone_else(user, status, code):
    response = cache_api.CacheStatsView.as_view()(api_request(user))

    assert response.status_code == status
    error = orjson.loads(response.rendered_content)["error"]
    assert error["code"] == code


@pytest.mark.django_db
def test_the_stats_endpoint_is_mounted_for_staff_sessions(admin_client, client):
    resolve("/api/v1/cache/stats")

    assert admin_client.get("/api/v1/cache/stats").status_code == 200
    assert client.get("/api/v1/cache/stats").status_code == 401
