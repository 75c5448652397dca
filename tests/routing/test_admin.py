"""The route admin: targets edited inline, in order, and summarised in the list."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from routing.cache import admin as admin_cache
from routing.models import Route
from tests import factories

pytestmark = pytest.mark.django_db


def route_form(**changes: str) -> dict[str, str]:
    """The route's own fields as a browser posts them untouched, with `changes` applied."""
    data = {
        "name": "chat",
        "tenant": "",
        "strategy": "fallback",
        "description": "",
        "default_max_tokens": "",
        "cache_ttl_seconds": "0",
        "semantic_threshold": "0.950",
        "hedge_after_ms": "",
        "enabled": "on",
    }
    return data | changes


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
        route_form(tenant=str(acme.pk))
        | targets_formset(
            {"position": "1", "provider_model": str(fallback.pk), "weight": "1", "enabled": "on"},
            {"position": "0", "provider_model": str(primary.pk), "weight": "1", "enabled": "on"},
        ),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    route = Route.objects.get(name="chat")
    assert route.tenant == acme
    assert [t.provider_model for t in route.targets.order_by("position")] == [primary, fallback]
    # The form's defaults are the model's: no cache, no hedging.
    assert (route.cache_ttl_seconds, route.semantic_cache, route.hedge_after_ms) == (0, False, None)
    assert route.semantic_threshold == Decimal("0.95")


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
        route_form(name="solo")
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
        route_form()
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


# --- caching and hedging ---------------------------------------------------------------------


def test_the_change_page_groups_the_caching_and_hedging_settings(admin_client, models):
    route = factories.make_route("chat", *models)

    response = admin_client.get(reverse("admin:routing_route_change", args=[route.pk]))

    fieldsets = {
        fieldset.name: [field for line in fieldset for field in line]
        for fieldset in response.context["adminform"]
    }
    assert [field.field.name for field in fieldsets["Caching and hedging"]] == [
        "cache_ttl_seconds",
        "semantic_cache",
        "semantic_threshold",
        "hedge_after_ms",
    ]


def test_it_saves_the_caching_and_hedging_settings(admin_client, models, saved):
    route = factories.make_route("chat", models[0])
    target = route.targets.get()
    saved.clear()

    response = admin_client.post(
        reverse("admin:routing_route_change", args=[route.pk]),
        route_form(
            cache_ttl_seconds="300",
            semantic_cache="on",
            semantic_threshold="0.9",
            hedge_after_ms="800",
        )
        | targets_formset(
            {
                "id": str(target.pk),
                "route": str(route.pk),
                "position": "0",
                "provider_model": str(models[0].pk),
                "weight": "1",
                "enabled": "on",
            },
            initial=1,
        ),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    route.refresh_from_db()
    assert (route.cache_ttl_seconds, route.semantic_cache, route.hedge_after_ms) == (300, True, 800)
    assert route.semantic_threshold == Decimal("0.9")
    assert "Route" in saved  # post_save: the gateway rebuilds its snapshot


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("semantic_threshold", "0", "above 0 and at most 1"),
        ("semantic_threshold", "1.5", "above 0 and at most 1"),
        ("semantic_threshold", "-0.5", "above 0 and at most 1"),
        ("semantic_threshold", "0.9505", "decimal places"),
        ("semantic_threshold", "", "required"),
        ("hedge_after_ms", "0", "greater than or equal to 1"),
        ("cache_ttl_seconds", "-1", "greater than or equal to 0"),
    ],
)
def test_it_refuses_caching_values_out_of_range(admin_client, models, field, value, message):
    response = admin_client.post(
        reverse("admin:routing_route_add"),
        route_form(**{field: value})
        | targets_formset(
            {"position": "0", "provider_model": str(models[0].pk), "weight": "1", "enabled": "on"}
        ),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, []))
    assert not Route.objects.exists()


def test_a_threshold_of_exactly_one_is_accepted(admin_client, models):
    response = admin_client.post(
        reverse("admin:routing_route_add"),
        route_form(semantic_cache="on", semantic_threshold="1")
        | targets_formset(
            {"position": "0", "provider_model": str(models[0].pk), "weight": "1", "enabled": "on"}
        ),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    assert Route.objects.get().semantic_threshold == Decimal(1)


# --- the response cache ----------------------------------------------------------------------


def test_the_list_offers_the_clear_cache_action_and_runs_it(admin_client, models, monkeypatch):
    chosen = factories.make_route("chat", *models)
    factories.make_route("other", *models)
    cleared: list[int | None] = []

    async def clear(tenant_id: int | None = None, *, route_id: int | None = None) -> int:
        cleared.append(route_id)
        return 2

    monkeypatch.setattr(admin_cache.cache, "clear", clear)
    changelist = reverse("admin:routing_route_changelist")

    page = admin_client.get(changelist)
    response = admin_client.post(
        changelist,
        {"action": "clear_route_cache", "_selected_action": [str(chosen.pk)]},
        follow=True,
    )

    choices = dict(page.context["action_form"].fields["action"].choices)
    assert "clear_route_cache" in choices
    assert cleared == [chosen.pk]
    assert "2 cache keys deleted." in [str(m) for m in response.context["messages"]]


def test_the_list_links_to_the_cache_page(admin_client, models):
    factories.make_route("chat", *models)

    response = admin_client.get(reverse("admin:routing_route_changelist"))

    content = response.content.decode()
    assert f'href="{reverse("cache-clear")}"' in content
    assert "Response cache" in content
    assert '<td class="field-target_summary">' in content  # still the stock change list


def test_staff_who_may_not_change_routes_get_neither_link_nor_action(client, models):
    factories.make_route("chat", *models)
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_route"))
    client.force_login(viewer)

    response = client.get(reverse("admin:routing_route_changelist"))

    assert response.status_code == 200
    assert reverse("cache-clear") not in response.content.decode()
    action_form = response.context.get("action_form")
    actions = dict(action_form.fields["action"].choices) if action_form else {}
    assert "clear_route_cache" not in actions
