"""The audit writer never loses a row: hostile values are stored bounded, values the
database would refuse are sanitized, and a row that is still refused is dead-lettered
(visible, replayable) while the rest of its batch lands."""

from __future__ import annotations

import json

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from audit.json_columns import DEPTH_MARKER, row_to_json
from audit.models import AuditEvent
from audit.sanitize import SANITIZED_KEY
from audit.store import prepare, replay_spool_file
from audit.writer import AuditWriter, audit_writer
from tests.audit.rows import row


def nested(depth: int) -> list:
    """A content part nested `depth` lists deep (orjson stops encoding at 254)."""
    value: list = []
    for _ in range(depth):
        value = [value]
    return [{"type": "text", "text": "hi", "extra": value}]


@pytest.mark.django_db(transaction=True)
def test_a_row_nested_too_deep_is_stored_bounded_and_the_rest_of_its_batch_lands():
    writer = AuditWriter()
    for index in range(5):
        writer.record(row(f"req_good_{index}", prompt=[{"role": "user", "content": "hello"}]))
    writer.record(row("req_deep", prompt=[{"role": "user", "content": nested(400)}]))
    for index in range(5, 10):
        writer.record(row(f"req_good_{index}"))

    writer.flush()

    assert writer.pending() == 0
    stored = set(AuditEvent.objects.values_list("request_id", flat=True))
    assert stored == {f"req_good_{index}" for index in range(10)} | {"req_deep"}
    deep = AuditEvent.objects.get(request_id="req_deep")
    text = orjson.dumps(deep.prompt).decode()
    assert DEPTH_MARKER in text
    assert text.count("[") < 100  # cut, not stored 400 levels deep
    assert deep.prompt[0]["content"][0]["text"] == "hi"  # what is shallow is kept
    assert deep.metadata[SANITIZED_KEY]["prompt"]["too_deep"] >= 1


@pytest.mark.django_db
def test_huge_strings_and_lists_in_json_columns_are_stored_bounded(settings):
    settings.AUDIT_MAX_TEXT_CHARS = 1000
    many = [{"type": "text", "text": "x"}] * 20_000
    writer = AuditWriter()
    writer.record(
        row(
            "req_huge",
            prompt=[{"role": "user", "content": "y" * 5000}, {"role": "user", "content": many}],
            metadata={"big": 2**70},
        )
    )
    writer.flush()

    stored = AuditEvent.objects.get(request_id="req_huge")
    assert stored.prompt[0]["content"].startswith("y" * 1000)
    assert stored.prompt[0]["content"].endswith("[truncated: 5000 chars]")
    assert len(stored.prompt[1]["content"]) == 10_001
    assert stored.prompt[1]["content"][-1] == "[truncated: 10000 more items]"
    assert stored.metadata["big"] == str(2**70)  # beyond 64 bits: kept as text


@pytest.mark.django_db(transaction=True)
def test_nul_characters_overlong_text_and_out_of_range_tokens_land_sanitized():
    writer = AuditWriter()
    writer.record(row("req_before"))
    writer.record(
        row(
            "req_hostile",
            prompt=[{"role": "user", "content": "a\x00b", "name\x00": "n"}],
            response="r\x00s",
            error_message="e\x00",
            model="m" * 5000,
            requested_model="q\x00",
            prompt_tokens=3_000_000_000,
            completion_tokens=-5,
            total_tokens=2_999_999_995,
            latency_ms=-1,
            attempts=70_000,
            metadata={"user": "u\x00v", "tags": ["t\x00"], "client_request_id": "c\x00"},
        )
    )
    writer.record(row("req_after"))

    writer.flush()

    assert set(AuditEvent.objects.values_list("request_id", flat=True)) == {
        "req_before",
        "req_hostile",
        "req_after",
    }
    stored = AuditEvent.objects.get(request_id="req_hostile")
    assert stored.prompt == [{"role": "user", "content": "a\ufffdb", "name\ufffd": "n"}]
    assert (stored.response, stored.error_message, stored.requested_model) == (
        "r\ufffds",
        "e\ufffd",
        "q\ufffd",
    )
    assert len(stored.model) == 200
    assert stored.model.endswith("[truncated: 5000 chars]")
    assert (stored.prompt_tokens, stored.completion_tokens, stored.total_tokens) == (
        2147483647,
        0,
        2147483647,
    )
    assert (stored.latency_ms, stored.attempts) == (0, 32767)
    assert stored.metadata["user"] == "u\ufffdv"
    assert stored.metadata["tags"] == ["t\ufffd"]
    # The raw facts stay visible on the row.
    notes = stored.metadata[SANITIZED_KEY]
    assert notes["model"] == {"length": 5000}
    assert notes["prompt_tokens"] == {"raw": "3000000000"}
    assert notes["completion_tokens"] == {"raw": "-5"}
    assert notes["response"] == {"nul": 1}
    assert notes["metadata"]["nul"] == 3
    assert notes["prompt"]["nul"] == 2


@pytest.mark.django_db(transaction=True)
def test_a_row_with_unprintable_values_still_lands():
    class Hostile:
        def __str__(self) -> str:
            raise ValueError("no text for you")

    writer = AuditWriter()
    writer.record(row("req_odd", route=Hostile(), metadata={"x": Hostile()}))
    writer.flush()

    stored = AuditEvent.objects.get(request_id="req_odd")
    assert stored.route == "[unprintable]"
    assert stored.metadata["x"] == "[unprintable]"


@pytest.mark.django_db(transaction=True)
def test_a_spooled_line_with_an_unknown_field_still_lands(settings, tmp_path):
    """An AuditRow cannot hold a stray field, but a spool line (an older version's, one
    edited by hand) can: its value is kept in the metadata rather than failing the row."""
    settings.STATE_DIR = tmp_path
    line = orjson.loads(row_to_json(prepare(row("req_odd"))))
    spool_dir = tmp_path / "audit-spool"
    spool_dir.mkdir()
    path = spool_dir / "00000000000000000001-1-0-1.jsonl"
    path.write_bytes(orjson.dumps({**line, "surprise": "field"}) + b"\n")

    settled = replay_spool_file(path)

    assert settled is not None and settled.written == 1
    stored = AuditEvent.objects.get(request_id="req_odd")
    assert stored.metadata[SANITIZED_KEY]["unknown_fields"] == {"surprise": "field"}


async def post(key: str, body: dict):
    return await AsyncClient().post(
        "/v1/chat/completions",
        data=json.dumps(body),  # the standard library encodes what orjson will not
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )


@pytest.mark.django_db(transaction=True)
async def test_a_hostile_request_refused_for_its_depth_does_not_cost_other_requests_rows(
    personas,
):
    """The reproduction of issue 11 item 1: the proxy refuses a content part nested a few
    hundred levels deep, but its prompt still goes on the audit row, in the same batch as
    other tenants' rows."""
    hostile = {"model": "echo", "messages": [{"role": "user", "content": nested(300)}]}
    good = {"model": "echo", "messages": [{"role": "user", "content": "hello"}]}
    responses = [await post(personas.acme.plaintext_key, good)]
    responses.append(await post(personas.acme.plaintext_key, hostile))
    responses.append(await post(personas.acme.plaintext_key, good))
    assert [response.status_code for response in responses] == [200, 400, 200]
    assert orjson.loads(responses[1].content)["error"]["code"] == "policy_max_depth"

    await sync_to_async(audit_writer.flush)()

    rows = await sync_to_async(lambda: {e.request_id: e for e in AuditEvent.objects.all()})()
    assert set(rows) == {response["x-request-id"] for response in responses}
    refused = rows[responses[1]["x-request-id"]]
    assert refused.outcome == "rejected"
    assert DEPTH_MARKER in orjson.dumps(refused.prompt).decode()
