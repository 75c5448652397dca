"""Daily roll-ups of the ledger: grouped per day and dimensions, rebuilt whole (the same
rows every time), on the tenant's calendar days (23 and 25 hours when the clocks change),
late lines of closed months on the first open day."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from billing.closing import period_close
from billing.models import DailyUsage
from billing.period_state import day_bounds
from billing.rollup_sql import TAGS_MAX_CHARS, canonical_tags
from billing.rollups import rollup_date, rollup_day
from billing.terms_services import tenant_terms_set
from tests.billing.ledger_lines import line, local, priced_model, rolled_up, rollup_rows

pytestmark = pytest.mark.django_db


def test_tags_are_canonical_json_sorted_compact_and_non_ascii_as_is():
    metadata = {"tags": {"zeta": "1", "Équipe": "recherche", "a": 'say "hi"\n', "b": "東京"}}
    assert canonical_tags(metadata) == (
        '{"a":"say \\"hi\\"\\n","b":"東京","zeta":"1","Équipe":"recherche"}'
    )
    assert canonical_tags({}) == canonical_tags({"tags": {}}) == ""
    assert canonical_tags({"tags": "not an object"}) == canonical_tags(None) == ""


def test_a_tag_set_too_long_for_the_column_keeps_its_first_pairs_while_they_fit():
    tags = {f"k{n:02d}": "v" * 500 for n in range(50)}
    text = canonical_tags({"tags": tags})
    assert len(text) <= TAGS_MAX_CHARS
    kept = __import__("json").loads(text)
    assert list(kept) == [f"k{n:02d}" for n in range(len(kept))] and len(kept) == 7


def test_a_day_is_grouped_by_key_route_model_version_and_tag_set(acme):
    gpt, small = priced_model("gpt-x"), priced_model("gpt-small", input_per_million="0.10")
    at = local("2025-03-10 12:00")
    line(acme, at, gpt, tags={"team": "search"})
    line(acme, at, gpt, tags={"team": "search"}, prompt=10)
    line(acme, at, gpt, tags={"team": "ads"})
    line(acme, at, small)
    line(acme, at, gpt, api_key_id=2, key_prefix="gw_other")
    line(acme, at - timedelta(days=1), gpt)  # another day
    assert rollup_day(tenant_id=acme.id, day=date(2025, 3, 10)) == 4
    search = DailyUsage.objects.get(tags='{"team":"search"}')
    assert (search.requests, search.prompt_tokens, search.model) == (2, 1010, "gpt-x")
    assert search.cost_usd == Decimal("0.003010")
    assert (search.late, search.tenant_slug, search.price_version_id) == (
        False,
        "acme",
        gpt.version.id,
    )
    assert rolled_up() == (5, 5 * 1500 - 990, Decimal("0.00811"))


def test_the_stored_tag_text_is_the_python_canonical_form(acme):
    """On Postgres the text is made in SQL: it must agree with canonical_tags, or a report
    grouping by tag would split one tag set in two."""
    sets = [
        {"b": "2", "a": "1", "aa": "x", "B": "upper"},
        {"ключ": "значение", "clé": "été", "emoji": "🙂"},
        {"quote": '"', "back": "\\", "ctl": "\x01\x1f\t", "del": "\x7f", "sep": "\u2028"},
        {"long key " * 10: "long value " * 45},
        {f"k{n:02d}": "v" * 500 for n in range(50)},
        {},
    ]
    for tags in sets:
        line(acme, local("2025-03-10 08:00"), tags=tags)
    rollup_day(tenant_id=acme.id, day=date(2025, 3, 10))
    stored = set(DailyUsage.objects.values_list("tags", flat=True))
    assert stored == {canonical_tags({"tags": tags}) for tags in sets}


def test_rebuilding_a_day_gives_the_same_rows(acme):
    gpt = priced_model()
    for hour in range(0, 24, 3):
        line(acme, local(f"2025-03-10 {hour:02d}:30"), gpt, tags={"h": str(hour % 2)})
    day = date(2025, 3, 10)
    rollup_day(tenant_id=acme.id, day=day)
    first = rollup_rows()
    assert rollup_day(tenant_id=acme.id, day=day) == len(first)
    assert rollup_date(day).days >= 1
    assert rollup_rows() == first


def test_a_day_is_the_tenants_local_day_of_23_or_25_hours(acme):
    tenant_terms_set(tenant=acme, markup_percent=0, currency="USD", time_zone="Europe/Paris")
    spring, autumn = date(2025, 3, 30), date(2025, 10, 26)
    for day, hours in ((spring, 23), (autumn, 25)):
        start, end = day_bounds(day=day, time_zone="Europe/Paris")
        assert end - start == timedelta(hours=hours)
        line(acme, start - timedelta(microseconds=1))  # the day before, local 23:59:59.999999
        line(acme, start)  # local midnight
        line(acme, end - timedelta(seconds=1))  # local 23:59:59
        line(acme, end)  # the next day
        rollup_day(tenant_id=acme.id, day=day)
        assert rolled_up(day=day)[0] == 2
    rollup_day(tenant_id=acme.id, day=date(2025, 3, 29))
    assert rolled_up(day=date(2025, 3, 29))[0] == 1


def test_a_request_at_23_59_59_local_on_the_months_last_day_is_in_that_day(acme):
    tenant_terms_set(tenant=acme, markup_percent=0, currency="USD", time_zone="America/New_York")
    line(acme, local("2025-01-31 23:59:59", "America/New_York"))  # 2025-02-01 04:59:59 UTC
    rollup_day(tenant_id=acme.id, day=date(2025, 1, 31))
    rollup_day(tenant_id=acme.id, day=date(2025, 2, 1))
    assert rolled_up(day=date(2025, 1, 31))[0] == 1
    assert rolled_up(day=date(2025, 2, 1))[0] == 0


def test_a_tenant_without_terms_has_utc_days(acme, globex):
    line(acme, local("2025-03-10 23:30"))
    tenant_terms_set(tenant=globex, markup_percent=0, currency="USD", time_zone="Asia/Tokyo")
    line(globex, local("2025-03-10 23:30"))  # 2025-03-11 08:30 in Tokyo
    summary = rollup_date(date(2025, 3, 10))
    assert summary.rows == 1
    assert DailyUsage.objects.get().tenant_slug == "acme"


def test_late_lines_of_a_closed_month_go_to_the_first_open_day_until_billed(acme, settings):
    gpt = priced_model()
    line(acme, local("2025-01-15 10:00"), gpt)
    rollup_day(tenant_id=acme.id, day=date(2025, 1, 15))
    [january] = period_close(month="2025-01", tenant_slug="acme")
    closed_rows = rollup_rows(day__lt=date(2025, 2, 1))
    # Arrives after the close, for January, and February has usage of its own.
    line(acme, local("2025-01-20 10:00"), gpt, prompt=7)
    line(acme, local("2025-02-01 09:00"), gpt, prompt=3)
    assert rollup_day(tenant_id=acme.id, day=date(2025, 1, 20)) == 0  # closed: left alone
    rollup_day(tenant_id=acme.id, day=date(2025, 2, 1))
    assert rollup_rows(day__lt=date(2025, 2, 1)) == closed_rows
    late = DailyUsage.objects.get(day=date(2025, 2, 1), late=True)
    assert (late.requests, late.prompt_tokens) == (1, 7)
    assert DailyUsage.objects.get(day=date(2025, 2, 1), late=False).prompt_tokens == 3
    [february] = period_close(month="2025-02", tenant_slug="acme")
    assert february.adjustments_usd > 0
    # Billed now: the late row stays February's, and March's first day has none.
    rollup_day(tenant_id=acme.id, day=date(2025, 3, 1))
    assert DailyUsage.objects.get(day=date(2025, 2, 1), late=True).prompt_tokens == 7
    assert not DailyUsage.objects.filter(day=date(2025, 3, 1)).exists()
    assert january.total_usd == rolled_up(day__lt=date(2025, 2, 1))[2]


def test_the_command_rebuilds_a_date_or_the_pending_days(acme):
    line(acme, local("2025-03-10 12:00"))
    out = StringIO()
    call_command("billing_rollup", "--date", "2025-03-10", stdout=out)
    assert "1 row(s)" in out.getvalue()
    call_command("billing_rollup", stdout=out)
    assert "ledger cursor" in out.getvalue()
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("billing_rollup", "--date", "2025-13-01")


def test_beat_runs_the_pending_roll_ups():
    schedule = settings.CELERY_BEAT_SCHEDULE["billing-rollup-pending"]
    assert schedule["task"] == "billing.tasks.billing_rollup_pending"
    assert schedule["schedule"] == settings.BILLING_ROLLUP_INTERVAL_SECONDS == 300
