"""The provider admin: models inline, whether the key's env var is set (never its value), and
each model's circuit, with the action that resets it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from providers.circuit import CLOSED, OPEN, breaker, circuit_states, target_key
from providers.models import Provider
from tests import factories
from tests.providers.test_circuit import target

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_circuits")]


@pytest.mark.parametrize(
    "url",
    [
        "admin:providers_provider_changelist",
        "admin:providers_provider_add",
        "admin:providers_providermodel_changelist",
        "admin:providers_providermodel_add",
    ],
)
def test_provider_pages_render(admin_client, url):
    factories.make_model(factories.make_provider())
    assert admin_client.get(reverse(url)).status_code == 200


def test_it_says_whether_the_secret_is_set_without_showing_it(admin_client, monkeypatch):
    monkeypatch.setenv("GW_TEST_OPENAI_KEY", "sk-very-secret-value")
    with_key = factories.make_provider("openai", kind="openai", api_key_env="GW_TEST_OPENAI_KEY")
    without = factories.make_provider("other", kind="openai", api_key_env="GW_TEST_UNSET_KEY")

    changelist = admin_client.get(reverse("admin:providers_provider_changelist"))
    page = admin_client.get(reverse("admin:providers_provider_change", args=[with_key.pk]))

    for response in (changelist, page):
        content = response.content.decode()
        assert "GW_TEST_OPENAI_KEY" in content
        assert "sk-very-secret-value" not in content
    admin = changelist.context["cl"].model_admin
    assert admin.secret_present(with_key) is True
    assert admin.secret_present(without) is False
    assert 'alt="True"' in page.content.decode()


def provider_form(**changes: str) -> dict[str, str]:
    """The add form as a browser posts it untouched, with `changes` applied."""
    data = {
        "name": "openai",
        "kind": "openai",
        "enabled": "on",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OPENAI_API_KEY",
        "api_version": "",
        "connect_timeout_s": "5",
        "timeout_s": "60",
        "first_byte_timeout_s": "",
        "stream_idle_timeout_s": "",
        "max_retries": "1",
        "circuit_failure_threshold": "5",
        "circuit_cooldown_s": "30",
        "stub_delay_ms": "0",
        "models-TOTAL_FORMS": "0",
        "models-INITIAL_FORMS": "0",
        "models-MIN_NUM_FORMS": "0",
        "models-MAX_NUM_FORMS": "1000",
    }
    return data | changes


def test_it_creates_a_provider_with_its_models_inline(admin_client, saved):
    response = admin_client.post(
        reverse("admin:providers_provider_add"),
        provider_form()
        | {
            "models-TOTAL_FORMS": "1",
            "models-0-name": "gpt-4o-mini",
            "models-0-input_per_million": "0.15",
            "models-0-output_per_million": "0.60",
            "models-0-context_window": "128000",
        },
    )
    assert response.status_code == 302, response.context and response.context["errors"]
    provider = Provider.objects.get(name="openai")
    assert [(m.name, str(m.output_per_million)) for m in provider.models.all()] == [
        ("gpt-4o-mini", "0.600000")
    ]
    # The form's defaults are the model's: empty timeouts mean "the total timeout".
    assert (provider.first_byte_timeout_s, provider.stream_idle_timeout_s) == (None, None)
    assert (
        provider.max_retries,
        provider.circuit_failure_threshold,
        provider.circuit_cooldown_s,
    ) == (1, 5, 30)
    # Model saves, not bulk writes: post_save is what makes the gateway rebuild its snapshot.
    assert {"Provider", "ProviderModel"} <= set(saved)


def test_the_change_page_groups_the_resilience_settings(admin_client):
    provider = factories.make_provider("openai", kind="openai")

    response = admin_client.get(reverse("admin:providers_provider_change", args=[provider.pk]))

    fieldsets = {
        fieldset.name: [field for line in fieldset for field in line]
        for fieldset in response.context["adminform"]
    }
    assert [field.field.name for field in fieldsets["Resilience"]] == [
        "first_byte_timeout_s",
        "stream_idle_timeout_s",
        "max_retries",
        "circuit_failure_threshold",
        "circuit_cooldown_s",
    ]


def test_it_saves_the_resilience_settings(admin_client, saved):
    response = admin_client.post(
        reverse("admin:providers_provider_add"),
        provider_form(
            first_byte_timeout_s="2.5",
            stream_idle_timeout_s="10",
            max_retries="0",
            circuit_failure_threshold="3",
            circuit_cooldown_s="0",
        ),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    provider = Provider.objects.get(name="openai")
    assert provider.first_byte_timeout_s == Decimal("2.5")
    assert provider.stream_idle_timeout_s == Decimal("10")
    assert (
        provider.max_retries,
        provider.circuit_failure_threshold,
        provider.circuit_cooldown_s,
    ) == (0, 3, 0)
    assert "Provider" in saved  # post_save: the gateway rebuilds its snapshot


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_byte_timeout_s", "0"),  # 0 would silently mean "the total timeout"
        ("stream_idle_timeout_s", "0"),
        ("first_byte_timeout_s", "0.0005"),  # the column keeps milliseconds
        ("circuit_failure_threshold", "0"),  # the breaker would read it as 1
        ("max_retries", "-1"),
        ("circuit_cooldown_s", ""),
    ],
)
def test_it_refuses_resilience_values_that_mean_nothing(admin_client, field, value):
    response = admin_client.post(
        reverse("admin:providers_provider_add"), provider_form(**{field: value})
    )

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not Provider.objects.exists()


# --- circuits ---------------------------------------------------------------------------------
def _open_circuit(provider: str, model: str) -> None:
    t = target(model, provider=provider, threshold=1)
    async_to_sync(breaker.record)(t, ok=False, kind="server_error")


@pytest.mark.django_db
def test_the_provider_list_shows_each_models_circuit(admin_client):
    provider = factories.make_provider("acme-ai")
    factories.make_model(provider, "broken")
    factories.make_model(provider, "fine")
    _open_circuit("acme-ai", "broken")

    content = admin_client.get(reverse("admin:providers_provider_changelist")).content.decode()

    assert "broken: open (1 consecutive failure, probe at" in content
    assert "fine: closed" in content


@pytest.mark.django_db
def test_the_provider_page_shows_each_models_circuit(admin_client):
    provider = factories.make_provider("acme-ai")
    factories.make_model(provider, "broken")
    _open_circuit("acme-ai", "broken")

    page = admin_client.get(reverse("admin:providers_provider_change", args=[provider.pk]))

    assert "broken: open (1 consecutive failure, probe at" in page.content.decode()


@pytest.mark.django_db
def test_the_reset_action_closes_the_selected_providers_circuits(admin_client):
    chosen = factories.make_provider("acme-ai")
    other = factories.make_provider("other-ai")
    factories.make_model(chosen, "broken")
    factories.make_model(other, "broken")
    _open_circuit("acme-ai", "broken")
    _open_circuit("other-ai", "broken")

    response = admin_client.post(
        reverse("admin:providers_provider_changelist"),
        {"action": "reset_circuit", "_selected_action": [chosen.pk]},
        follow=True,
    )

    assert "Closed 1 circuit(s) of 1 provider(s)." in response.content.decode()
    states = {
        s.key: s.state
        for s in circuit_states(
            keys=[target_key("acme-ai", "broken"), target_key("other-ai", "broken")]
        )
    }
    assert states == {"acme-ai/broken": CLOSED, "other-ai/broken": OPEN}


@pytest.mark.django_db
def test_the_provider_pages_say_when_redis_is_unreachable(admin_client, settings):
    provider = factories.make_provider("acme-ai")
    factories.make_model(provider, "echo")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    changelist = admin_client.get(reverse("admin:providers_provider_changelist"))
    page = admin_client.get(reverse("admin:providers_provider_change", args=[provider.pk]))

    for response in (changelist, page):
        assert response.status_code == 200
        assert "echo: unknown (Redis unreachable)" in response.content.decode()
