"""Each worker's metrics thread: once a second it writes the tally of its requests to the
shared files (routing/metrics/tally.py) and copies its own audit figures there.

A scrape runs in whichever worker Prometheus reaches, and the audit queue is per process:
read at scrape time it would be that one worker's. So each worker writes its queue length
(a gauge summed over the live workers) and the growth of its written / failed / spilled
counts into the shared files. A worker that dies stops counting in the gauge once the
next one starts (`mark_process_dead`, gateway_project/lib/metrics_dir.py).

The thread (a daemon) starts with the worker (gateway_project/asgi.py's lifespan) or with
the first recorded request or scrape; the tally is also written when the process exits.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from audit.writer import audit_writer
from routing.metrics import instruments as m
from routing.metrics.tally import tally

logger = logging.getLogger(__name__)

EVERY_SECONDS = 1.0

_started_in: int | None = None  # the pid that started the thread (a fork has none)
_lock = threading.Lock()
_seen = {"written": 0, "failures": 0, "spilled": 0}


def ensure_started() -> None:
    global _started_in
    if _started_in == os.getpid():
        return
    with _lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
        _seen.update(written=0, failures=0, spilled=0)
        threading.Thread(target=_run, name="metrics", daemon=True).start()
        atexit.register(flush)


def flush() -> None:
    """Write this worker's tally and audit figures to the metric files now."""
    tally.flush()
    sample_audit()


def sample_audit() -> None:
    with _lock:
        m.audit_pending.set(audit_writer.pending())
        for name, counter in (
            ("written", m.audit_written),
            ("failures", m.audit_write_failures),
            ("spilled", m.audit_spilled),
        ):
            now = getattr(audit_writer, name)
            if now > _seen[name]:
                counter.inc(now - _seen[name])
            _seen[name] = now


def _run() -> None:
    while True:
        time.sleep(EVERY_SECONDS)
        try:
            flush()
        except Exception:
            logger.exception("metrics: could not write this worker's figures")
