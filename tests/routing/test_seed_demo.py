"""`manage.py seed_demo`, what `make run` calls: a working demo setup, idempotently."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command

from providers.models import Provider, ProviderModel
from routing.models import Route
from tenants.keys import KEY_MARK, key_prefix, matches
from tenants.models import ApiKey, Tenant
from tests import factories

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(re.escape(KEY_MARK) + r"[A-Za-z0-9]{48}")


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


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
    embedder = ProviderModel.objects.get(provider=model.provider, name="stub-embed")
    assert embedder.input_per_million == 0
    route = Route.objects.get(name="demo-embed", tenant=None)
    assert route.targets.get().provider_model == embedder
    assert 'client.embeddings.create(model="demo-embed", input="Hello!")' in out
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
    assert ProviderModel.objects.count() == 2
    assert Route.objects.count() == 3
    assert ApiKey.objects.filter(name="demo key (make run)").count() == 2
    assert "1 earlier demo key still works" in second


def test_seed_demo_keeps_an_edited_route(acme: Tenant) -> None:
    provider = factories.make_provider("vendor", kind="openai", base_url="https://x.test")
    factories.make_route("demo", factories.make_model(provider, "big"))

    run("seed_demo")

    assert Route.objects.get(name="demo").targets.get().provider_model.name == "big"


def test_seed_demo_belongs_to_routing_the_app_above_everything_it_seeds() -> None:
    from django.core.management import get_commands

    assert get_commands()["seed_demo"] == "routing"
