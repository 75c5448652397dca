"""The route admin: targets edited inline, in order, and summarised in the list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db.models.signals import post_save
from django.urls import reverse

from routing.models import Route
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def saved() -> Iterator[list[str]]:
    """The models saved (post_save, which invalidates the proxy's snapshot) during the test."""
    seen: list[str] = []

    def record(sender: type, **kwargs: object) -> None:
        seen.append(sender.__name__)

    post_save.connect(record, weak=False, dispatch_uid="test-routing-saved")
    yield seen
    post_save.disconnect(dispatch_uid="test-routing-saved")


def targets_formset(*rows: dict[str, str], initial: int = 0) -> dict[str, str]:
    data = {
        "targets-TOTAL_FORMS": str(len(rows)),
        "targets-INITIAL_FORMS": str(initial),
        "targets-MIN_NUM_FORMS": "0",
        "targets-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        data.update({f"targets-{index}-{name}": value for name, value in row.items()})
    return data


@pytest.fixture
def models(db):
    openai = factories.make_provider("openai", kind="openai")
    anthropic = factories.make_provider("anthropic", kind="anthropic")
    return (
        factories.make_model(openai, "gpt-4o-mini"),
        factories.make_model(anthropic, "claude-3-5-haiku"),
    )


@pytest.mark.parametrize("url", ["admin:routing_route_changelist", "admin:routing_route_add"])
def test_route_pages_render(admin_client, models, url):
    factories.make_route("chat", *models)
    assert admin_client.get(reverse(url)).status_code == 200


def test_it_creates_a_route_with_two_ordered_targets(admin_client, acme, models):
    primary, fallback = models
    response = admin_client.post(
        reverse("admin:routing_route_add"),
        {
            "name": "chat",
            "tenant": str(acme.pk),
            "strategy": "fallback",
            "description": "",
            "enabled": "on",
        }
        | targets_formset(
            {"position": "1", "provider_model": str(fallback.pk), "weight": "1", "enabled": "on"},
            {"position": "0", "provider_model": str(primary.pk), "weight": "1", "enabled": "on"},
        ),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    route = Route.objects.get(name="chat")
    assert route.tenant == acme
    assert [t.provider_model for t in route.targets.order_by("position")] == [primary, fallback]


def test_the_change_page_shows_targets_in_position_order(admin_client, models):
    primary, fallback = models
    route = factories.make_route("chat", primary, fallback)
    route.targets.filter(provider_model=primary).update(position=5)

    response = admin_client.get(reverse("admin:routing_route_change", args=[route.pk]))

    forms = response.context["inline_admin_formsets"][0].formset.forms
    assert [form.instance.provider_model for form in forms[:2]] == [fallback, primary]


def test_the_list_shows_owner_and_a_target_summary(admin_client, acme, models):
    factories.make_route("chat", *models)
    factories.make_route("private", models[1], tenant=acme)

    response = admin_client.get(reverse("admin:routing_route_changelist"))
    content = response.content.decode()

    assert "openai/gpt-4o-mini → anthropic/claude-3-5-haiku" in content
    assert '<td class="field-owner">global</td>' in content
    assert '<td class="field-owner">acme</td>' in content


def test_the_list_does_not_query_per_route(admin_client, models, django_assert_max_num_queries):
    for index in range(10):
        factories.make_route(f"chat-{index}", *models)
    with django_assert_max_num_queries(12):
        admin_client.get(reverse("admin:routing_route_changelist"))


def test_a_new_route_offers_two_numbered_rows_and_ignores_an_untouched_one(admin_client, models):
    page = admin_client.get(reverse("admin:routing_route_add"))
    forms = page.context["inline_admin_formsets"][0].formset.forms
    assert [form["position"].value() for form in forms] == [0, 1]

    response = admin_client.post(
        reverse("admin:routing_route_add"),
        {"name": "solo", "tenant": "", "strategy": "fallback", "description": "", "enabled": "on"}
        | targets_formset(
            {"position": "0", "provider_model": str(models[0].pk), "weight": "1", "enabled": "on"},
            {"position": "1", "provider_model": "", "weight": "1", "enabled": "on"},
        ),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    assert Route.objects.get(name="solo").targets.count() == 1


def test_editing_only_a_target_inline_saves_it_through_the_model(admin_client, models, saved):
    primary, fallback = models
    route = factories.make_route("chat", primary)
    target = route.targets.get()
    saved.clear()

    response = admin_client.post(
        reverse("admin:routing_route_change", args=[route.pk]),
        {"name": "chat", "tenant": "", "strategy": "fallback", "description": "", "enabled": "on"}
        | targets_formset(
            {
                "id": str(target.pk),
                "route": str(route.pk),
                "position": "0",
                "provider_model": str(fallback.pk),
                "weight": "1",
                "enabled": "on",
            },
            initial=1,
        ),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    assert route.targets.get().provider_model == fallback
    assert "RouteTarget" in saved  # post_save: the gateway rebuilds its snapshot
