"""The incremental roll-up: the days of lines written since the last run, each line's day
found in its tenant's zone, late lines sent to the first open day, and no line skipped
because it committed after lines with higher ids."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from django.db import connection, transaction

from billing.closing import period_close
from billing.models import DailyUsage, RollupCursor, UsageLine
from billing.rollups import rollup_pending
from billing.terms_services import tenant_terms_set
from tests.billing.ledger_lines import line, local, priced_model, rolled_up, rollup_rows

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="concurrent writers need Postgres"
)


@pytest.fixture(autouse=True)
def _settle_at_once(settings) -> None:
    settings.BILLING_ROLLUP_SETTLE_SECONDS = 0


@pytest.mark.django_db
def test_pending_rebuilds_the_days_of_new_lines_in_each_tenants_zone(acme, globex):
    tenant_terms_set(tenant=globex, markup_percent=0, currency="USD", time_zone="Asia/Tokyo")
    line(acme, local("2025-03-10 23:30"))
    line(globex, local("2025-03-10 23:30"))  # the 11th in Tokyo
    summary = rollup_pending()
    assert (summary.days, summary.rows) == (2, 2)
    assert set(DailyUsage.objects.values_list("tenant_slug", "day")) == {
        ("acme", date(2025, 3, 10)),
        ("globex", date(2025, 3, 11)),
    }
    rows = rollup_rows()
    rollup_pending()
    rollup_pending()
    assert rollup_rows() == rows


@pytest.mark.django_db
def test_a_late_line_found_by_pending_goes_to_the_first_open_day(acme):
    gpt = priced_model()
    line(acme, local("2025-01-15 10:00"), gpt)
    rollup_pending()
    period_close(month="2025-01", tenant_slug="acme")
    january = rollup_rows(day__lt=date(2025, 2, 1))
    line(acme, local("2025-01-31 23:00"), gpt, prompt=5)
    rollup_pending()
    assert rollup_rows(day__lt=date(2025, 2, 1)) == january
    late = DailyUsage.objects.get(day=date(2025, 2, 1))
    assert (late.late, late.prompt_tokens) == (True, 5)


@pytest.mark.django_db
def test_a_line_committed_after_higher_ids_is_still_rolled_up(acme):
    """As a batch that took its ids first and committed last: its id is below the highest
    one a run has seen, and the next run must still read it."""
    hole = line(acme, local("2025-03-10 10:00"))
    hole_id = hole.id
    hole.delete()  # the id is taken, its line not visible yet
    line(acme, local("2025-03-10 11:00"))
    rollup_pending()
    assert rolled_up()[0] == 1
    line(acme, local("2025-03-10 10:00"), id=hole_id)  # now it commits
    summary = rollup_pending()
    assert rolled_up()[0] == 2
    assert summary.cursor == UsageLine.objects.latest("id").id


@pytest.mark.django_db
def test_the_cursor_waits_for_the_settle_time(acme, settings):
    settings.BILLING_ROLLUP_SETTLE_SECONDS = 3600
    line(acme, local("2025-03-10 11:00"))
    rollup_pending()
    assert rollup_pending().cursor == 0
    assert RollupCursor.objects.get(name="ledger-seen").last_line_id == UsageLine.objects.get().id


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_the_cursor_stays_behind_a_writer_still_in_flight(acme):
    taken, release, done = threading.Event(), threading.Event(), threading.Event()
    ids: list[int] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                ids.append(line(acme, local("2025-03-10 10:00")).id)
                taken.set()
                release.wait(10)
        finally:
            connection.close()
            done.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert taken.wait(10)
    later = line(acme, local("2025-03-10 11:00"))
    assert later.id > ids[0]
    rollup_pending()  # sees the later line, marks its id
    assert rollup_pending().cursor == 0  # the writer's transaction is older than the mark
    assert rolled_up()[0] == 1
    release.set()
    assert done.wait(10)
    writer.join()
    rollup_pending()
    assert rolled_up()[0] == 2
    assert rollup_pending().cursor == later.id


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_take_turns(acme):
    for hour in range(10, 20):
        line(acme, local(f"2025-03-10 {hour}:00"))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            rollup_pending()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert rolled_up()[0] == 10
    assert DailyUsage.objects.count() == 1


@pytest.mark.django_db
def test_the_beat_task_runs_the_pending_roll_ups(acme):
    from billing.tasks import billing_rollup_pending

    line(acme, local("2025-03-10 12:00"))
    assert billing_rollup_pending() == {"days": 1, "rows": 1, "cursor": 0}
    assert billing_rollup_pending()["cursor"] == UsageLine.objects.get().id
