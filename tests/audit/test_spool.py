"""The spool: rows past AUDIT_QUEUE_MAX (or left at shutdown) wait in local files and are
written once the database takes rows, exactly once, and record() never waits for room."""

from __future__ import annotations

import threading
import time

import pytest

from audit import spool
from audit.models import AuditEvent
from audit.store import prepare
from audit.writer import AuditWriter
from tests.audit.rows import row

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _own_state_dir(settings, tmp_path) -> None:
    settings.STATE_DIR = tmp_path


def wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def stored_ids() -> list[str]:
    return sorted(AuditEvent.objects.values_list("request_id", flat=True))


def test_the_writer_replays_the_spool_at_start_and_skips_rows_already_written(settings):
    """A spool file may hold rows that did reach the database (a commit whose answer was
    lost, a file half replayed by a process that died): billing them twice is as bad as
    losing them."""
    settings.AUDIT_BACKGROUND_WRITER = True
    first = AuditWriter()
    first.record(row("req_written"))
    first.flush()
    path = spool.spill([prepare(row("req_written")), prepare(row("req_spooled"))])
    assert spool.spooled_row_count() == 2

    writer = AuditWriter()
    writer.start()  # what the ASGI lifespan startup does
    try:
        assert wait_for(lambda: not path.exists())
    finally:
        writer.close()

    assert stored_ids() == ["req_spooled", "req_written"]
    assert spool.spooled_row_count() == 0


def test_a_spool_file_another_process_is_replaying_is_left_to_it(settings):
    from audit.services import audit_spool_replay

    path = spool.spill([prepare(row("req_spooled"))])
    with spool.claimed(path) as fd:  # another worker holds it
        assert fd is not None
        report = audit_spool_replay()
        assert (report.files, stored_ids()) == (0, [])
    report = audit_spool_replay()
    assert (report.files, report.replayed, stored_ids()) == (1, 1, ["req_spooled"])
    assert not path.exists()


def test_spooled_rows_are_redacted_before_they_reach_the_disk(settings):
    from audit.models import RedactionRule
    from audit.row import RedactionRules

    rules = RedactionRules.of([RedactionRule(name="mail", detector="email", replacement="[EMAIL]")])
    path = spool.spill(
        [prepare(row("req_pii", prompt=[{"role": "user", "content": "a@b.example"}], rules=rules))]
    )
    assert b"a@b.example" not in path.read_bytes()
    assert b"[EMAIL]" in path.read_bytes()


def test_record_never_waits_when_the_queue_is_full_and_the_overflow_is_spooled(settings):
    """Issue 11 item 4: with the database stuck, record() (called on the event loop) used
    to wait for room in the queue, freezing every request of the worker."""
    settings.AUDIT_BACKGROUND_WRITER = True
    settings.AUDIT_QUEUE_MAX = 50
    settings.AUDIT_BATCH_SIZE = 20
    settings.AUDIT_FLUSH_INTERVAL_SECONDS = 0.01
    writer = AuditWriter()
    writer.start()
    # A batch stuck in the database: the writer thread cannot take another one.
    writer._write_lock.acquire()
    elapsed: list[float] = []

    def record_past_the_max() -> None:
        started = time.perf_counter()
        for index in range(1050):
            writer.record(row(f"req_{index:04d}"))
        elapsed.append(time.perf_counter() - started)

    try:
        caller = threading.Thread(target=record_past_the_max, daemon=True)
        caller.start()
        caller.join(5)
        assert elapsed, "record() blocked with the queue full"
        assert elapsed[0] < 0.5
        # The spiller moves what is past the max to the spool, off the caller's thread.
        assert wait_for(lambda: writer.pending() <= 50)
        assert wait_for(lambda: spool.spooled_row_count() + writer.pending() == 1050)
    finally:
        writer._write_lock.release()
    # The database is back: the queue is written, then the spool, every row once.
    try:
        assert wait_for(lambda: AuditEvent.objects.count() == 1050 and not spool.spool_files())
    finally:
        writer.close()
    assert stored_ids() == [f"req_{index:04d}" for index in range(1050)]


def test_a_full_batch_is_written_at_once_not_at_the_next_interval(settings):
    settings.AUDIT_BATCH_SIZE = 10
    settings.AUDIT_FLUSH_INTERVAL_SECONDS = 30
    settings.AUDIT_BACKGROUND_WRITER = False
    writer = AuditWriter()
    for index in range(10):  # queued before the thread starts: its first batch takes all
        writer.record(row(f"req_first_{index}"))
    settings.AUDIT_BACKGROUND_WRITER = True
    writer.start()
    try:
        assert wait_for(lambda: AuditEvent.objects.count() == 10, timeout=5)
        # The next batch is not due for 30 s, but a full one goes at once.
        started = time.monotonic()
        for index in range(10):
            writer.record(row(f"req_next_{index}"))
        assert wait_for(lambda: AuditEvent.objects.count() == 20, timeout=5)
        assert time.monotonic() - started < 5
    finally:
        writer.close()
