"""Brute-force protection: the admin login form and the management API answer 429 once an
address (or, for the login, a user name) has tried too often within a minute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import override_settings
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone

from gateway_project import rest_urls
from gateway_project.lib import ratelimit
from gateway_project.lib.ratelimit import AuthFailureRateLimitMixin
from tenants.services import management_token_issue

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.7"  # TEST-NET addresses: never the 127.0.0.1 other tests use
ELSEWHERE = "198.51.100.9"
PASSWORD = "correct horse battery"


class Clock:
    """django-ratelimit's clock, frozen, so no test straddles the edge of a window."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch, settings) -> Iterator[Clock]:
    # A fast hasher: these tests try passwords by the hundred.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    clock = Clock()
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=clock.time))
    cache.clear()
    yield clock
    cache.clear()


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user(
        "ops", password=PASSWORD, is_staff=True, is_superuser=True
    )


# --- admin login ----------------------------------------------------------------------------


def login(client, username: str = "ops", password: str = "wrong", ip: str = ATTACKER):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def test_the_eleventh_login_post_in_a_minute_from_one_address_gets_a_429_page(client, staff):
    for attempt in range(10):
        assert login(client, username=f"guess{attempt}").status_code == 200  # the form again

    refused = login(client, username="ops", password=PASSWORD)

    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("text/html")
    assert "Too many sign-in attempts" in refused.content.decode()
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "no-cache" in refused["Cache-Control"]
    assert "_auth_user_id" not in client.session  # the right password was not even tried


def test_successful_logins_count_too(client, staff):
    for _ in range(10):
        assert login(client, password=PASSWORD).status_code == 302
        client.logout()
    assert login(client, password=PASSWORD).status_code == 429


def test_the_login_page_itself_still_loads(client, staff):
    for _ in range(11):
        login(client)
    assert client.get(reverse("admin:login"), REMOTE_ADDR=ATTACKER).status_code == 200


def test_one_user_name_is_limited_to_twenty_tries_from_anywhere(client, staff):
    for attempt in range(20):
        response = login(client, username="OPS " if attempt % 2 else "ops", ip=f"10.0.0.{attempt}")
        assert response.status_code == 200
    refused = login(client, username="Ops", password=PASSWORD, ip="10.0.1.1")
    assert refused.status_code == 429
    assert login(client, username="someone-else", ip="10.0.1.2").status_code == 200


def test_the_address_may_try_again_in_the_next_window(client, staff, clock):
    for _ in range(11):
        login(client)
    clock.now += 61
    response = login(client, password=PASSWORD)
    assert response.status_code == 302


@override_settings(GATEWAY_ADMIN_LOGIN_RATE="2/m")
def test_the_login_rate_comes_from_settings(client, staff):
    assert [login(client).status_code for _ in range(3)] == [200, 200, 429]


def test_other_addresses_are_not_affected(client, staff):
    for _ in range(11):
        login(client)
    assert login(client, password=PASSWORD, ip=ELSEWHERE).status_code == 302


def test_an_unreachable_cache_still_lets_the_right_password_in(client, staff, monkeypatch):
    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("redis is away")

    monkeypatch.setattr(ratelimit, "get_usage", broken)
    assert login(client, password=PASSWORD).status_code == 302


def test_an_unreachable_cache_still_limits_logins_in_the_process(client, staff, monkeypatch):
    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("redis is away")

    monkeypatch.setattr(ratelimit, "get_usage", broken)
    ratelimit._local_counters.clear()
    assert [login(client).status_code for _ in range(10)] == [200] * 10
    refused = login(client, password=PASSWORD)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60


@pytest.fixture
def stopped_redis(settings) -> Iterator[None]:
    """The Django cache on a redis-server of our own, which the test then kills."""
    from tests.live import RedisServer

    server = RedisServer().start()
    original = settings.CACHES
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    ratelimit._local_counters.clear()
    try:
        server.stop()
        yield
    finally:
        server.stop()
        settings.CACHES = original  # before the clock fixture clears the cache
        ratelimit._local_counters.clear()


@pytest.mark.live  # stopped_redis starts (and stops) a redis-server
def test_the_right_password_signs_in_while_redis_is_down(client, staff, stopped_redis):
    response = login(client, password=PASSWORD)
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


@pytest.mark.live  # stopped_redis starts (and stops) a redis-server
def test_logins_are_still_rate_limited_while_redis_is_down(client, staff, stopped_redis):
    assert [login(client).status_code for _ in range(10)] == [200] * 10
    assert login(client, password=PASSWORD).status_code == 429
    # Another address has its own (local) window.
    assert login(client, password=PASSWORD, ip=ELSEWHERE).status_code == 302


# --- management API ---------------------------------------------------------------------------


def token(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}"}


@pytest.fixture
def staff_token(staff) -> str:
    return management_token_issue(
        user=staff, expires_at=timezone.now() + timedelta(days=1)
    ).plaintext


def api(client, *, ip: str = ATTACKER, headers: dict[str, str] | None = None):
    return client.get("/api/v1/tenants/", REMOTE_ADDR=ip, headers=headers or {})


def test_the_61st_failed_api_login_in_a_minute_gets_a_429_envelope(client, staff):
    for attempt in range(60):
        assert api(client, headers=token(f"guess{attempt}")).status_code == 401

    refused = api(client, headers=token("guess60"))

    assert refused.status_code == 429
    assert refused.json() == {
        "error": {
            "message": refused.json()["error"]["message"],
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert refused.json()["error"]["message"].startswith("Too many failed authentication")
    assert 1 <= int(refused["Retry-After"]) <= 60


@override_settings(GATEWAY_API_AUTH_RATE="3/m")
def test_once_limited_even_the_right_token_waits(client, staff_token):
    for _ in range(3):
        assert api(client).status_code == 401  # anonymous: counts as well
    assert api(client, headers=token("wrong")).status_code == 429
    assert api(client, headers=token(staff_token)).status_code == 429
    # Other addresses, and this one in the next window, are served.
    assert api(client, ip=ELSEWHERE, headers=token(staff_token)).status_code == 200


@override_settings(GATEWAY_API_AUTH_RATE="3/m")
def test_the_address_is_served_again_in_the_next_window(client, staff_token, clock):
    for _ in range(4):
        api(client)
    clock.now += 61
    assert api(client, headers=token(staff_token)).status_code == 200


@override_settings(GATEWAY_API_AUTH_RATE="3/m")
def test_authenticated_requests_do_not_count(client, staff, staff_token):
    for _ in range(10):
        assert api(client, headers=token(staff_token)).status_code == 200
    client.force_login(staff)
    for _ in range(10):
        assert api(client).status_code == 200


@override_settings(GATEWAY_API_AUTH_RATE="3/m")
def test_every_route_of_the_management_api_is_covered(client, staff):
    for _ in range(4):
        api(client)
    refused = client.post("/api/v1/tenants/acme/keys/1/revoke/", REMOTE_ADDR=ATTACKER)
    assert refused.status_code == 429
    assert client.get("/api/v1/routes/", REMOTE_ADDR=ATTACKER).status_code == 429


def _views(patterns: list) -> list[type]:
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            found.append(pattern.callback.cls)
    return found


def test_every_management_view_carries_the_mixin():
    views = _views(rest_urls.urlpatterns)
    assert views
    assert all(issubclass(view, AuthFailureRateLimitMixin) for view in views), views
