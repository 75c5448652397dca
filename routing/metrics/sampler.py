"""Each worker's own audit figures, written where every worker's scrape reads them.

A scrape runs in whichever worker Prometheus reaches, and the audit queue is per process:
read at scrape time it would be that one worker's. So each worker copies its queue length
(a gauge summed over the live workers) and the growth of its written / failed / spilled
counts into the shared files every SAMPLE_SECONDS, from a daemon thread started with the
first recorded request or scrape. A worker that dies stops counting in the gauge once the
next worker starts (`mark_process_dead`, gateway_project/lib/metrics_dir.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from audit.writer import audit_writer
from routing.metrics import instruments as m

logger = logging.getLogger(__name__)

SAMPLE_SECONDS = 2.0

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
        threading.Thread(target=_run, name="metrics-sampler", daemon=True).start()


def sample() -> None:
    """Copy this worker's audit figures into the metrics (the thread calls it; so may tests)."""
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
        try:
            sample()
        except Exception:
            logger.exception("metrics: could not sample the audit queue")
        time.sleep(SAMPLE_SECONDS)
