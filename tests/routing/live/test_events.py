"""What a live traffic watcher is told of a request, and the filters it may ask for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit.row import AuditRow
from routing.live.events import FilterError, LiveFilter, live_event


def event(status: int, tenant: str = "acme") -> dict:
    return {"tenant": tenant, "status": status}


@pytest.mark.parametrize(
    ("status", "passes", "fails"),
    [
        ("", (200, 404, 502), ()),
        ("ok", (200, 201), (301, 404, 502)),
        ("error", (400, 429, 502), (200, 302)),
        ("4xx", (400, 413, 429), (200, 500)),
        ("5xx", (500, 504), (200, 499)),
        ("429", (429,), (200, 428, 430)),
    ],
)
def test_a_status_filter_takes_classes_and_codes(status, passes, fails):
    wanted = LiveFilter.from_query(f"status={status}".encode())
    assert all(wanted.matches(event(code)) for code in passes)
    assert not any(wanted.matches(event(code)) for code in fails)


def test_a_tenant_filter_is_one_slug_exactly():
    wanted = LiveFilter.from_query(b"tenant=acme&status=")
    assert wanted.matches(event(200, "acme"))
    assert not wanted.matches(event(200, "acme-eu"))
    assert not wanted.matches(event(200, ""))


@pytest.mark.parametrize(
    "query", [b"status=600", b"status=2x", b"tenant=a%20b", b"tenant=" + b"a" * 101, b"\xff"]
)
def test_a_filter_it_cannot_apply_is_an_error(query):
    with pytest.raises(FilterError):
        LiveFilter.from_query(query)


def test_an_unknown_route_is_not_named_and_chat_is_the_default_endpoint():
    row = AuditRow(
        request_id="req_1", created_at=datetime.now(UTC), outcome="rejected", status_code=404,
        route="what the client typed", metadata={"user": "u", "tags": {"a": "b"}},
    )  # fmt: skip
    sent = live_event(row)
    assert sent["route"] == "" and sent["endpoint"] == "chat.completions"
    assert "u" not in sent.values() and "what the client typed" not in str(sent)
