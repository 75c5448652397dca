"""Clearing the cache from the admin (routing/cache/admin.py)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import RequestFactory

from routing import cache
from routing.cache.admin import clear_cache_view, clear_route_cache
from tests.routing.cache.support import body, completion, new_id, route


def admin_request(user: User, method: str = "post", data: dict | None = None):
    request = getattr(RequestFactory(), method)("/admin/cache/clear/", data or {})
    request.user = user
    request._messages = CookieStorage(request)
    return request


@pytest.mark.django_db
def test_the_admin_view_clears_one_tenant_or_all(admin_user):
    r, acme, globex = route(), new_id(), new_id()
    async_to_sync(cache.store)(r, acme, body(), completion())
    async_to_sync(cache.store)(r, globex, body(), completion())

    response = clear_cache_view(admin_request(admin_user, data={"tenant_id": str(acme)}))

    assert response.status_code == 302
    assert async_to_sync(cache.lookup)(r, acme, body()) is None
    assert async_to_sync(cache.lookup)(r, globex, body()) is not None
    clear_cache_view(admin_request(admin_user))
    assert async_to_sync(cache.lookup)(r, globex, body()) is None


@pytest.mark.django_db
def test_the_admin_view_shows_the_stats_before_clearing(admin_user):
    response = clear_cache_view(admin_request(admin_user, method="get"))

    assert response.status_code == 200
    assert b"Clear the cache" in response.content
    assert b"hit rate" in response.content


@pytest.mark.django_db
def test_the_admin_view_needs_the_route_change_permission():
    from django.core.exceptions import PermissionDenied

    staff = User.objects.create_user("viewer", is_staff=True)
    with pytest.raises(PermissionDenied):
        clear_cache_view(admin_request(staff))


@pytest.mark.django_db
def test_the_route_admin_action_clears_the_selected_routes(admin_user):
    from django.contrib import admin

    from routing.models import Route
    from tests import factories

    provider = factories.make_provider("local", kind="stub")
    chosen = factories.make_route("cached", factories.make_model(provider, "echo"))
    other = route()
    entry, tenant = route(route_id=chosen.id), new_id()
    async_to_sync(cache.store)(entry, tenant, body(), completion())
    async_to_sync(cache.store)(other, tenant, body(), completion())

    clear_route_cache(
        admin.site._registry[Route], admin_request(admin_user), Route.objects.filter(id=chosen.id)
    )

    assert async_to_sync(cache.lookup)(entry, tenant, body()) is None
    assert async_to_sync(cache.lookup)(other, tenant, body()) is not None
