"""A row the database still refuses after sanitizing goes to the dead-letter file: counted
in /ready, listed in the admin, and replayed exactly once by the command or the admin."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import orjson
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import AsyncClient
from django.urls import reverse

from audit import spool
from audit.json_columns import row_to_json
from audit.models import AuditEvent
from audit.store import prepare
from audit.writer import AuditWriter
from tests.audit.rows import row

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _own_state_dir(settings, tmp_path) -> None:
    settings.STATE_DIR = tmp_path


@pytest.fixture
def refusing_database() -> Iterator[None]:
    """The real database refuses rows whose request id starts with `refuse_` (a trigger),
    as it would a row sanitizing cannot save; dropping it is "the bug was fixed"."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION audit_refuse() RETURNS trigger AS $$ BEGIN "
                "IF NEW.request_id LIKE 'refuse_%' THEN RAISE EXCEPTION 'refused by the test'; "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_auditevent "
                "FOR EACH ROW EXECUTE FUNCTION audit_refuse()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_auditevent "
                "WHEN NEW.request_id LIKE 'refuse_%' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
    yield
    fix_the_database()


def fix_the_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER IF EXISTS audit_refuse"
            + (" ON audit_auditevent" if connection.vendor == "postgresql" else "")
        )
        if connection.vendor == "postgresql":
            cursor.execute("DROP FUNCTION IF EXISTS audit_refuse()")


def write_with_one_refused() -> None:
    writer = AuditWriter()
    writer.record(row("req_before"))
    writer.record(row("refuse_me", response="kept\x00anyway", prompt_tokens=3_000_000_000))
    writer.record(row("req_after"))
    writer.flush()
    assert writer.pending() == 0


def stored_ids() -> list[str]:
    return sorted(AuditEvent.objects.values_list("request_id", flat=True))


def test_a_refused_row_is_dead_lettered_and_the_rest_of_its_batch_lands(refusing_database):
    write_with_one_refused()

    assert stored_ids() == ["req_after", "req_before"]
    lines = spool.dead_letter_path().read_bytes().splitlines()
    assert len(lines) == 1
    kept = orjson.loads(lines[0])
    assert kept["request_id"] == "refuse_me"
    assert kept["response"] == "kept\ufffdanyway"  # stored sanitized, ready to replay
    assert "refused by the test" in kept["_dead_letter"]["error"]


async def test_ready_counts_the_dead_letters(refusing_database, settings):
    from asgiref.sync import sync_to_async

    settings.GATEWAY_METRICS_TOKEN = "metrics-token-for-tests"
    operator = {"Authorization": "Bearer metrics-token-for-tests"}
    before = orjson.loads((await AsyncClient().get("/ready", headers=operator)).content)
    await sync_to_async(write_with_one_refused)()

    body = orjson.loads((await AsyncClient().get("/ready", headers=operator)).content)

    assert (before["audit_dead_letters"], body["audit_dead_letters"]) == (0, 1)
    assert body["audit_spooled"] == 0


def test_the_command_replays_each_dead_letter_exactly_once(refusing_database):
    write_with_one_refused()
    out = StringIO()
    call_command("audit_replay_dead_letters", stdout=out, stderr=StringIO())
    # Still refused: kept, not dropped, not duplicated.
    assert "0 replayed" in out.getvalue() and "1 still failing" in out.getvalue()
    assert spool.dead_letter_count() == 1
    assert stored_ids() == ["req_after", "req_before"]

    fix_the_database()
    out = StringIO()
    call_command("audit_replay_dead_letters", stdout=out)
    assert "1 replayed" in out.getvalue()
    replayed = AuditEvent.objects.get(request_id="refuse_me")
    assert replayed.response == "kept\ufffdanyway"
    assert replayed.prompt_tokens == 2147483647
    assert replayed.metadata["audit_sanitized"]["prompt_tokens"] == {"raw": "3000000000"}
    assert spool.dead_letter_count() == 0

    # Run again, and with the same row dead-lettered twice meanwhile: nothing is doubled.
    line = orjson.dumps(
        {**orjson.loads(row_to_json(prepare(row("refuse_me")))), "_dead_letter": {}}
    )
    spool.dead_letter_append_lines(line + b"\n" + line + b"\n")
    out = StringIO()
    call_command("audit_replay_dead_letters", stdout=out)
    assert "0 replayed, 2 already present" in out.getvalue()
    assert stored_ids() == ["refuse_me", "req_after", "req_before"]
    assert spool.dead_letter_count() == 0


def test_an_unreadable_dead_letter_line_is_kept(refusing_database):
    spool.dead_letter_append_lines(b"{not json\n")
    call_command("audit_replay_dead_letters", stdout=StringIO(), stderr=StringIO())
    assert spool.dead_letter_path().read_bytes() == b"{not json\n"


def test_the_admin_lists_the_dead_letters_and_replays_them(refusing_database, admin_client):
    write_with_one_refused()

    changelist = admin_client.get(reverse("admin:audit_auditevent_changelist"))
    assert "1 audit row(s) were refused by the database" in changelist.content.decode()
    page = admin_client.get(reverse("admin:audit_auditevent_dead_letters"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "refuse_me" in html and "refused by the test" in html
    assert "Replay the dead letters" in html

    fix_the_database()
    response = admin_client.post(reverse("admin:audit_auditevent_dead_letters"), follow=True)
    assert "1 replayed" in response.content.decode()
    assert stored_ids() == ["refuse_me", "req_after", "req_before"]
    admin_client.post(reverse("admin:audit_auditevent_dead_letters"))
    assert stored_ids() == ["refuse_me", "req_after", "req_before"]


def test_a_viewer_without_add_permission_sees_the_dead_letters_but_cannot_replay(
    refusing_database, client, django_user_model
):
    from django.contrib.auth.models import Permission

    write_with_one_refused()
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client.force_login(viewer)

    page = client.get(reverse("admin:audit_auditevent_dead_letters"))
    assert page.status_code == 200 and "refuse_me" in page.content.decode()
    assert "Replay the dead letters" not in page.content.decode()
    assert client.post(reverse("admin:audit_auditevent_dead_letters")).status_code == 403
    assert spool.dead_letter_count() == 1
