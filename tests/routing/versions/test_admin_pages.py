"""The admin's version pages: the list, one version with its YAML and download, the diff,
the audit row's link to its version and back; who may see them; bad input."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from routing.models import ConfigVersion, Route
from routing.services import route_update
from routing.snapshot import build_snapshot
from tests import factories
from tests.gateway_project.management_api import make_staff, session
from tests.routing.versions.support import doc

pytestmark = pytest.mark.django_db

LIST = reverse("admin:routing_configversion_changelist")
DIFF = reverse("admin:routing_configversion_diff")


def page(version: ConfigVersion) -> str:
    return reverse("admin:routing_configversion_change", args=[version.pk])


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def versions(db, committed) -> tuple[ConfigVersion, ConfigVersion]:
    """Two versions: the route `chat` with strategy fallback, then round-robin."""
    model = factories.make_model(factories.make_provider("local"), "echo")
    route = factories.make_route("chat", model)
    with committed() as first:
        route_update(route=route, description="first")
    with committed() as second:
        route_update(route=route, strategy=Route.Strategy.ROUND_ROBIN)
    return first[0], second[0]


@pytest.fixture
def ops():
    return session(make_staff("olga", groups=("Ops",)))


def test_the_list_shows_who_when_and_what_with_stable_ids(ops, versions):
    old, new = versions
    html = ops.get(LIST).content.decode()
    for version in versions:
        assert f'id="version-row-{version.pk}"' in html
        assert f'id="version-link-{version.pk}"' in html
    assert "route chat (global): strategy changed" in html
    # The latest change is what "compare" shows by default.
    assert re.search(rf'id="diff-a-{old.pk}"[^>]*checked', html)
    assert re.search(rf'id="diff-b-{new.pk}"[^>]*checked', html)
    assert 'id="version-diff-form"' in html and 'id="version-diff-submit"' in html


def test_a_version_page_shows_its_yaml_and_what_to_do_with_it(ops, versions):
    _, new = versions
    response = ops.get(page(new))
    html = response.content.decode()
    assert response.status_code == 200
    assert "strategy: round_robin" in html and 'id="version-yaml"' in html
    for element in ("version-download", "version-diff-previous", "version-diff-live",
                    "version-rollback", "version-requests"):  # fmt: skip
        assert f'id="{element}"' in html
    assert f"?config_version={new.routing_version}" in html


def test_download_yaml_is_the_document(ops, versions):
    _, new = versions
    response = ops.get(reverse("admin:routing_configversion_yaml", args=[new.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/yaml"
    assert f'filename="gateway-config-v{new.pk}.yaml"' in response["Content-Disposition"]
    text = response.content.decode()
    assert text.startswith(f"# Configuration version {new.pk}, recorded ")
    assert text.endswith(doc(new))


def test_the_diff_shows_the_lines_that_changed(ops, versions):
    old, new = versions
    response = ops.get(DIFF, {"a": old.pk, "b": new.pk})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="version-diff"' in html
    assert re.search(r'class="diff-add">.*?strategy: round_robin', html, re.S)
    assert "+1" in html  # one line added
    assert "description: first" in html  # context around the change


def test_the_diff_against_the_live_configuration(ops, versions):
    _, new = versions
    html = ops.get(DIFF, {"a": new.pk, "b": "live"}).content.decode()
    assert 'id="version-diff-empty"' in html  # the latest version is what is live


@pytest.mark.parametrize(
    "query, said",
    [
        ({"a": "999999", "b": "live"}, "There is no configuration version &#x27;999999&#x27; (a)."),
        ({"a": "x; drop", "b": "1"}, "There is no configuration version &#x27;x; drop&#x27; (a)."),
        ({"a": "", "b": "live"}, "Choose a version to compare (a)."),
    ],
)
def test_a_diff_of_an_unknown_version_says_so(ops, versions, query, said):
    response = ops.get(DIFF, query)
    assert response.status_code == 400
    assert said in response.content.decode()


@pytest.mark.parametrize("suffix", ["change", "yaml", "rollback"])
def test_an_unknown_version_is_a_message_not_an_error(ops, versions, suffix):
    url = reverse(f"admin:routing_configversion_{suffix}", args=[999999])
    response = ops.get(url)
    assert response.status_code == 302
    assert messages_of(response) == ["There is no configuration version 999999."]


def test_an_audit_row_links_to_the_version_it_was_served_under(ops, versions):
    old, new = versions
    snapshot_version = build_snapshot().version
    assert snapshot_version == new.routing_version
    row = AuditEvent.objects.create(
        request_id="req_versioned", created_at=timezone.now(), config_version=snapshot_version,
        outcome="success", status_code=200,
    )  # fmt: skip
    html = ops.get(reverse("admin:audit_auditevent_change", args=[row.pk])).content.decode()
    [href] = re.findall(r'id="audit-config-version" href="([^"]+)"', html)
    followed = ops.get(href.replace("&amp;", "&"))
    assert followed.status_code == 302 and followed["Location"] == page(new)
    # A row served before the change links to the version then in force.
    earlier = ops.get(
        reverse("admin:routing_configversion_by_hash", args=[old.routing_version]),
        {"at": (old.created_at + timedelta(milliseconds=1)).isoformat()},
    )
    assert earlier["Location"] == page(old)


def test_the_requests_served_under_a_version_are_the_audit_list_filtered(ops, versions):
    _, new = versions
    for route, version in (("route-under-it", new.routing_version), ("route-other", "0" * 16)):
        AuditEvent.objects.create(
            request_id=f"req_{route}", created_at=timezone.now(), config_version=version,
            route=route, outcome="success", status_code=200,
        )  # fmt: skip
    html = ops.get(page(new)).content.decode()
    [href] = re.findall(r'id="version-requests" href="([^"]+)"', html)
    listed = ops.get(href.replace("&amp;", "&"))
    assert listed.status_code == 200
    assert "route-under-it" in listed.content.decode()
    assert "route-other" not in listed.content.decode()


def test_a_hash_no_version_has_lists_nothing_and_says_why(ops, versions):
    response = ops.get(reverse("admin:routing_configversion_by_hash", args=["ab" * 8]))
    assert response["Location"] == f"{LIST}?routing_version={'ab' * 8}"
    assert "No recorded version has the routing hash" in messages_of(response)[0]
    bad = ops.get(reverse("admin:routing_configversion_by_hash", args=["nothex"]))
    assert messages_of(bad)[-1] == "'nothex' is not a configuration hash."


@pytest.mark.parametrize("groups", [("Finance",), ()])
def test_finance_and_plain_staff_see_no_version(versions, groups):
    client = session(make_staff("fred", groups=groups))
    _, new = versions
    for url in (LIST, page(new), DIFF, reverse("admin:routing_configversion_yaml", args=[new.pk])):
        assert client.get(url).status_code == 403, url


def test_a_viewer_without_the_rollback_permission_has_no_rollback(versions):
    viewer = session(make_staff("vera", "routing.view_configversion"))
    _, new = versions
    html = viewer.get(page(new)).content.decode()
    assert 'id="version-rollback"' not in html
    assert 'id="version-requests"' not in html  # no audit log for her either
    url = reverse("admin:routing_configversion_rollback", args=[new.pk])
    assert viewer.get(url).status_code == 403
    assert viewer.post(url).status_code == 403


def test_ops_may_view_and_roll_back_and_finance_has_nothing_of_versions():
    def codenames(group: str) -> set[str]:
        permissions = Group.objects.get(name=group).permissions.filter(
            content_type__app_label="routing", codename__endswith="configversion"
        )
        return set(permissions.values_list("codename", flat=True))

    assert codenames("Ops") == {"view_configversion", "rollback_configversion"}
    assert codenames("Finance") == set()
