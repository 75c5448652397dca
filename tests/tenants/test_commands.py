"""The management commands for keys and the demo seed."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from providers.models import Provider, ProviderModel
from routing.models import Route
from tenants.keys import KEY_MARK, key_prefix, looks_like_key, matches
from tenants.models import ApiKey, Tenant
from tests import factories

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(re.escape(KEY_MARK) + r"[A-Za-z0-9]{48}")


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- issue_api_key ----------------------------------------------------------------------------
def test_issue_api_key_prints_only_a_key_that_matches_its_stored_hash(acme: Tenant) -> None:
    out, err = run("issue_api_key", "--tenant", "acme", "--name", "ci")

    plaintext = out.strip()
    assert out == plaintext + "\n"
    assert looks_like_key(plaintext)
    stored = ApiKey.objects.get(tenant=acme, name="ci")
    assert stored.prefix == key_prefix(plaintext)
    assert matches(plaintext, stored.key_hash)
    assert plaintext not in stored.key_hash
    assert stored.allowed_routes == []
    assert stored.expires_at is None
    assert err == ""


def test_issue_api_key_restricts_routes_and_sets_an_expiry(acme: Tenant) -> None:
    provider = factories.make_provider()
    factories.make_route("support", factories.make_model(provider), tenant=acme)
    factories.make_route("echo", factories.make_model(provider, "echo2"))

    out, _ = run(
        "issue_api_key", "--tenant", "acme", "--name", "ci",
        "--allow-route", "support", "echo", "--allow-route", "support",
        "--expires-days", "30",
    )  # fmt: skip

    stored = ApiKey.objects.get(prefix=key_prefix(out.strip()))
    assert stored.allowed_routes == ["support", "echo"]
    expected = timezone.now() + timedelta(days=30)
    assert abs(stored.expires_at - expected) < timedelta(minutes=1)


def test_issue_api_key_warns_on_stderr_about_an_unknown_route(acme: Tenant) -> None:
    out, err = run("issue_api_key", "--tenant", "acme", "--name", "ci", "--allow-route", "typo")

    assert KEY_RE.fullmatch(out.strip())
    assert "typo" in err


def test_issue_api_key_refuses_an_unknown_tenant(globex: Tenant) -> None:
    with pytest.raises(CommandError, match="No tenant with slug 'nobody'"):
        run("issue_api_key", "--tenant", "nobody", "--name", "ci")
    assert not ApiKey.objects.exists()


def test_issue_api_key_refuses_a_non_positive_expiry(acme: Tenant) -> None:
    with pytest.raises(CommandError, match="positive"):
        run("issue_api_key", "--tenant", "acme", "--name", "ci", "--expires-days", "0")


# --- seed_demo ----------------------------------------------------------------------------------
def test_seed_demo_creates_a_working_setup_and_prints_how_to_use_it() -> None:
    out, _ = run("seed_demo", "--port", "8123")

    [plaintext] = set(KEY_RE.findall(out))
    key = ApiKey.objects.get(prefix=key_prefix(plaintext))
    assert matches(plaintext, key.key_hash)
    assert key.tenant.slug == "demo"
    assert key.name == "demo key (make run)"
    model = ProviderModel.objects.get(provider__name="local", name="echo")
    assert model.provider.kind == Provider.Kind.STUB
    assert model.input_per_million == 0 and model.output_per_million == 0
    for name in ("demo", "echo"):
        route = Route.objects.get(name=name, tenant=None)
        assert route.targets.get().provider_model == model
    assert "curl http://127.0.0.1:8123/v1/chat/completions" in out
    assert f"Bearer {plaintext}" in out
    assert 'OpenAI(base_url="http://127.0.0.1:8123/v1"' in out
    assert "http://127.0.0.1:8123/admin/" in out
    assert ".venv/bin/python manage.py createsuperuser" in out


def test_seed_demo_is_idempotent_but_issues_a_new_key_each_time() -> None:
    first, _ = run("seed_demo")
    second, _ = run("seed_demo")

    assert KEY_RE.search(first).group() != KEY_RE.search(second).group()
    assert Tenant.objects.filter(slug="demo").count() == 1
    assert Provider.objects.count() == 1
    assert ProviderModel.objects.count() == 1
    assert Route.objects.count() == 2
    assert ApiKey.objects.filter(name="demo key (make run)").count() == 2
    assert "1 earlier demo key still works" in second


def test_seed_demo_keeps_an_edited_route(acme: Tenant) -> None:
    provider = factories.make_provider("vendor", kind="openai", base_url="https://x.test")
    factories.make_route("demo", factories.make_model(provider, "big"))

    run("seed_demo")

    assert Route.objects.get(name="demo").targets.get().provider_model.name == "big"
