"""The live traffic page (/admin/live/) and who may open it: Ops (routing 0004), not Finance."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.contrib.staticfiles import finders
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests import factories
from tests.gateway_project.management_api import make_staff, session

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("routing.migrations.0006_live_traffic_permission")
PERMISSION = "routing.view_live_traffic"


def may_watch(group: str) -> bool:
    return Group.objects.filter(
        name=group, permissions__content_type__app_label="routing",
        permissions__codename="view_live_traffic",
    ).exists()  # fmt: skip


def test_ops_may_watch_live_traffic_and_finance_may_not():
    assert may_watch("Ops")
    assert not may_watch("Finance")


def test_the_migration_is_idempotent_and_reversible():
    state = MigrationExecutor(connection).loader.project_state(
        ("routing", "0006_live_traffic_permission")
    )
    MIGRATION.grant(state.apps, None)
    assert may_watch("Ops")
    MIGRATION.revoke(state.apps, None)
    assert not may_watch("Ops")
    MIGRATION.grant(state.apps, None)
    assert may_watch("Ops") and not may_watch("Finance")


def test_an_ops_user_gets_the_page_with_its_table_filters_and_script():
    factories.make_tenant("acme")
    factories.make_tenant("globex")
    ops = session(make_staff("olga", groups=("Ops",)))
    response = ops.get("/admin/live/")
    assert response.status_code == 200
    page = response.content.decode()
    for element_id in (
        "live-traffic-table",
        "live-traffic-rows",
        "live-traffic-waiting",
        "live-traffic-status",
        "live-traffic-count",
        "live-traffic-pause",
        "live-traffic-clear",
        "live-filter-tenant",
        "live-filter-status",
        "live-filter-apply",
    ):
        assert f'id="{element_id}"' in page
    assert "Waiting for traffic" in page
    assert 'data-stream-url="/admin/live/stream/"' in page
    assert '<option value="acme">' in page and '<option value="globex">' in page
    assert re.search(r'<script src="/?static/routing/live_traffic\.js"', page)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from elsewhere
    assert "<title>Live traffic |" in page  # inside the admin's own layout
    assert 'id="user-tools"' in page


def test_the_filters_come_back_from_the_query_string():
    ops = session(make_staff("olga", PERMISSION))
    page = ops.get("/admin/live/?tenant=acme&status=5xx").content.decode()
    assert 'id="live-filter-tenant" name="tenant" value="acme"' in page
    assert '<option value="5xx" selected>' in page
    bad = ops.get("/admin/live/?status=teapot")
    assert bad.status_code == 200
    assert 'id="live-filter-error"' in bad.content.decode()


def test_finance_is_refused_and_a_visitor_is_sent_to_the_login():
    finance = session(make_staff("fred", groups=("Finance",)))
    assert finance.get("/admin/live/").status_code == 403
    from django.test import Client

    response = Client().get("/admin/live/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_admin_links_the_page_for_those_who_may_watch_it():
    ops = session(make_staff("olga", groups=("Ops",)))
    finance = session(make_staff("fred", groups=("Finance",)))
    link = 'id="nav-live-traffic"'
    assert link in ops.get("/admin/").content.decode()
    assert 'href="/admin/live/"' in ops.get("/admin/").content.decode()
    assert link not in finance.get("/admin/").content.decode()


def test_the_script_is_ours_and_loads_nothing_from_elsewhere():
    path = finders.find("routing/live_traffic.js")
    assert path is not None
    script = Path(path).read_text(encoding="utf-8")
    assert "new EventSource(" in script
    assert "http://" not in script and "https://" not in script
    assert "innerHTML" not in script  # text goes in as text
