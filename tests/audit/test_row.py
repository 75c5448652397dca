"""AuditRow, the typed row the proxy hands the writer, and the redaction rules it carries as
data: its columns are the model's, it round-trips through the spool and the dead-letter
file, files the dict-era writer left still replay, and the rules compile once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from django.db.models import Field

from audit import spool
from audit.models import AuditEvent, RedactionRule
from audit.redaction import compile_rules, compiled_rules
from audit.row import COLUMNS, AuditRow, RedactionRules, RuleSpec
from audit.row_text import WITHHELD
from audit.services import audit_dead_letters_replay, audit_spool_replay
from audit.store import prepare
from audit.writer import AuditWriter
from tests.audit.rows import row

MAIL = RedactionRule(name="mail", detector="email", replacement="[EMAIL]")
WHEN = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _own_state_dir(settings, tmp_path) -> None:
    settings.STATE_DIR = tmp_path


def a_full_row(request_id: str, **fields: object) -> AuditRow:
    """Every column set to something other than its default."""
    values: dict = {
        "created_at": WHEN,
        "tenant_slug": "acme",
        "key_prefix": "gwk_AbCd1234",
        "route_id": 7,
        "route": "chat",
        "requested_model": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "fallback_used": True,
        "attempts": 2,
        "stream": True,
        "outcome": "upstream_error",
        "status_code": 502,
        "error_type": "upstream_error",
        "error_message": "upstream said no to jane@example.com",
        "latency_ms": 1234,
        "ttft_ms": 56,
        "prompt_tokens": 11,
        "completion_tokens": 22,
        "total_tokens": 33,
        "cost_usd": Decimal("0.0000123456"),
        "prompt": [{"role": "user", "content": "write to jane@example.com"}],
        "response": "done, jane@example.com",
        "attempt_log": [{"provider": "openai", "model": "gpt-4o-mini", "ms": 3, "ok": False}],
        "metadata": {"user": "jane@example.com", "tags": ["a"]},
        "config_version": "abc123",
        "rules": RedactionRules.of([MAIL]),
        **fields,
    }
    return AuditRow(request_id=request_id, **values)


def stored_values(request_id: str) -> dict:
    return AuditEvent.objects.filter(request_id=request_id).values(*COLUMNS).get()


def expected_values(audit_row: AuditRow) -> dict:
    """What the row should be stored as: its columns, with the e-mail rule applied."""
    values = audit_row.columns()
    values["error_message"] = "upstream said no to [EMAIL]"
    values["prompt"] = [{"role": "user", "content": "write to [EMAIL]"}]
    values["response"] = "done, [EMAIL]"
    values["metadata"] = {"user": "[EMAIL]", "tags": ["a"]}
    return values


def test_its_columns_are_the_models_columns() -> None:
    model_columns = [
        field.attname for field in AuditEvent._meta.concrete_fields if not field.primary_key
    ]
    assert list(COLUMNS) == model_columns
    bare = AuditRow(request_id="r", created_at=WHEN, outcome="success", status_code=200)
    assert list(bare.columns()) == model_columns


def test_its_defaults_are_the_models_defaults() -> None:
    bare = AuditRow(request_id="r", created_at=WHEN, outcome="success", status_code=200)
    for name in COLUMNS:
        field = AuditEvent._meta.get_field(name)
        assert isinstance(field, Field)
        if field.has_default():
            assert getattr(bare, name) == field.get_default(), name


@pytest.mark.django_db(transaction=True)
def test_a_row_round_trips_through_a_spool_file() -> None:
    spooled = a_full_row("req_spooled")
    path = spool.spill([prepare(spooled)])
    assert b"jane@example.com" not in path.read_bytes()  # redacted before the disk

    report = audit_spool_replay()

    assert (report.replayed, report.files) == (1, 1)
    assert stored_values("req_spooled") == expected_values(spooled)


@pytest.mark.django_db(transaction=True)
def test_a_row_round_trips_through_the_dead_letter_file() -> None:
    refused = a_full_row("req_refused")
    spool.dead_letter_append([prepare(refused)], error="refused by the test")
    assert b"jane@example.com" not in spool.dead_letter_path().read_bytes()

    report = audit_dead_letters_replay()

    assert report.replayed == 1
    assert stored_values("req_refused") == expected_values(refused)


# Lines as the writer wrote them before AuditRow (a dict per row; `_`-keys its markers).
OLD_LINE = (
    b'{"request_id":"req_old","created_at":"2026-12-01T10:00:00.123456+00:00",'
    b'"tenant_id":null,"tenant_slug":"acme","api_key_id":null,"key_prefix":"gwk_x",'
    b'"route_id":null,"route":"chat","requested_model":"chat","provider":"openai",'
    b'"model":"m","fallback_used":false,"attempts":1,"stream":false,"outcome":"success",'
    b'"status_code":200,"error_type":"","error_message":"","latency_ms":5,"ttft_ms":null,'
    b'"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"cost_usd":"0.0000001000",'
    b'"prompt":[{"role":"user","content":"[EMAIL]"}],"response":"ok","attempt_log":[],'
    b'"metadata":{"tag":"x"},"config_version":"v1"}'
)


def check_the_old_row(request_id: str) -> None:
    stored = AuditEvent.objects.get(request_id=request_id)
    assert stored.created_at == WHEN
    assert stored.cost_usd == Decimal("0.0000001000")
    assert (stored.prompt, stored.metadata) == (
        [{"role": "user", "content": "[EMAIL]"}],
        {"tag": "x"},
    )
    assert (stored.total_tokens, stored.config_version) == (3, "v1")


@pytest.mark.django_db(transaction=True)
def test_a_spool_file_the_dict_era_writer_left_still_replays(settings) -> None:
    directory = spool.spool_dir()
    directory.mkdir(parents=True)
    (directory / "00000000000000000001-1-0-1.jsonl").write_bytes(OLD_LINE + b"\n")

    assert audit_spool_replay().replayed == 1
    check_the_old_row("req_old")


@pytest.mark.django_db(transaction=True)
def test_a_dead_letter_file_the_dict_era_writer_left_still_replays() -> None:
    line = orjson.loads(OLD_LINE)
    line["_dead_letter"] = {"at": "2026-12-01T10:00:01+00:00", "error": "refused"}
    spool.dead_letter_append_lines(orjson.dumps(line) + b"\n")

    assert audit_dead_letters_replay().replayed == 1
    check_the_old_row("req_old")


@pytest.mark.django_db
def test_a_row_with_no_rules_to_go_by_is_stored_with_its_free_text_withheld() -> None:
    writer = AuditWriter()
    writer.record(a_full_row("req_unknown", rules=None))
    writer.flush()
    stored = AuditEvent.objects.get(request_id="req_unknown")
    assert (stored.response, stored.error_message) == (WITHHELD, WITHHELD)
    assert "jane@example.com" not in orjson.dumps(stored.prompt).decode()
    assert (stored.total_tokens, stored.cost_usd) == (33, Decimal("0.0000123456"))


def test_the_rules_are_data_equal_by_value_and_the_enabled_ones_only() -> None:
    first = RedactionRules.of([MAIL, RedactionRule(name="off", detector="ipv4", enabled=False)])
    again = RedactionRules.of([RedactionRule(name="mail", detector="email", replacement="[EMAIL]")])
    assert first.specs == (RuleSpec("mail", "email", "", "[EMAIL]", "audit"),)
    assert first == again and hash(first) == hash(again)
    assert first.fingerprint == again.fingerprint
    changed = RedactionRules.of([RedactionRule(name="mail", detector="email", replacement="[M]")])
    assert changed != first and changed.fingerprint != first.fingerprint


def test_equal_rules_are_compiled_once_whoever_asks() -> None:
    rules = RedactionRules.of([RedactionRule(name="once", detector="email", replacement="[1]")])
    same = RedactionRules.of([RedactionRule(name="once", detector="email", replacement="[1]")])
    compiled = compiled_rules(rules)
    assert compiled_rules(same) is compiled  # equal data, the same compiled rules
    assert compiled.rules == rules  # what a row served under them carries
    assert compiled.redact_for_audit("a@b.example") == "[1]"
    assert compile_rules([RedactionRule(name="once", detector="email")]) is not compiled


@pytest.mark.django_db
def test_the_writer_uses_the_rules_the_snapshot_compiled(monkeypatch) -> None:
    from audit import redaction
    from routing.snapshot import build_snapshot

    RedactionRule.objects.create(
        name="ticket", detector="regex", pattern="TCK-[0-9]+", replacement="[T]"
    )
    snapshot = build_snapshot()
    compiled: list[RedactionRules] = []
    real = redaction._compile

    def counting(rules: RedactionRules) -> redaction.CompiledRules:
        compiled.append(rules)
        return real(rules)

    monkeypatch.setattr(redaction, "_compile", counting)

    assert build_snapshot().redaction is snapshot.redaction  # a rebuild: no new compile
    writer = AuditWriter()
    writer.record(row("req_served", response="TCK-123", rules=snapshot.redaction.rules))
    writer.flush()

    assert compiled == []
    assert AuditEvent.objects.get(request_id="req_served").response == "[T]"
