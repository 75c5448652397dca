"""Who a version names: the staff user of the admin or the REST API (session or token), the
command, the task, or "system"."""

from __future__ import annotations

import pytest
from celery import shared_task
from django.core.management import call_command
from django.urls import reverse

from routing.models import Route
from routing.services import route_update
from tests import factories
from tests.gateway_project.management_api import json_post, make_staff, session, token_client
from tests.routing.test_admin import route_form, targets_formset

pytestmark = pytest.mark.django_db


@pytest.fixture
def route(db) -> Route:
    model = factories.make_model(factories.make_provider("local"), "echo")
    return factories.make_route("chat", model)


def test_the_admin_records_the_user(route: Route, committed):
    olga = make_staff("olga", groups=("Ops",))
    target = route.targets.get()
    form = route_form(description="edited in the admin") | targets_formset(
        {"id": str(target.pk), "route": str(route.pk), "position": "0",
         "provider_model": str(target.provider_model_id), "weight": "1", "enabled": "on"},
        initial=1,
    )  # fmt: skip
    with committed() as new:
        response = session(olga).post(reverse("admin:routing_route_change", args=[route.pk]), form)
    assert response.status_code == 302
    [version] = new
    assert (version.actor, version.user_id) == ("olga (admin)", olga.pk)
    assert "route chat (global): description changed" in version.summary


def test_the_rest_api_records_the_tokens_user(acme, committed):
    rita = make_staff("rita", groups=("Ops",))
    with committed() as new:
        response = json_post(token_client(rita), "/api/v1/tenants/acme/keys/", {"name": "ci"})
    assert response.status_code == 201, response.content
    [version] = new
    assert (version.actor, version.user_id) == ("rita (REST API token)", rita.pk)
    assert "(ci) added" in version.summary


def test_the_rest_api_records_a_session_user_too(acme, committed):
    rita = make_staff("rita", groups=("Ops",))
    with committed() as new:
        response = json_post(session(rita), "/api/v1/tenants/acme/keys/", {"name": "ci"})
    assert response.status_code == 201, response.content
    assert new[0].actor == "rita (REST API)"


def test_a_command_records_itself(acme, committed, tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers:\n  - {name: local, kind: stub, models: "
        '[{name: echo, input_per_million: "1", output_per_million: "2"}]}\n'
        "routes:\n  - {name: chat, targets: [{provider: local, model: echo}]}\n"
    )
    with committed() as new:
        call_command("import_gateway_config", str(path), stdout=None)
    [version] = new
    assert version.actor.startswith("command import_gateway_config (")
    assert version.user_id is None
    with committed() as issued:
        call_command("issue_api_key", "--tenant", "acme", "--name", "ci")
    assert issued[0].actor.startswith("command issue_api_key (")


@shared_task(name="tests.versions.rename_route")
def rename_route(route_id: int) -> None:
    route_update(route=Route.objects.get(pk=route_id), description="by a task")


def test_a_task_records_itself(route: Route, committed):
    with committed() as new:
        rename_route.apply(args=[route.pk])
    assert new[0].actor == "task tests.versions.rename_route"


def test_anything_else_is_the_system(route: Route, committed):
    with committed() as new:
        route_update(route=route, description="by nobody in particular")
    assert (new[0].actor, new[0].user_id) == ("system", None)
