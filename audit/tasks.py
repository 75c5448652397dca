"""Background jobs for the audit log."""

from __future__ import annotations

from audit.services import audit_purge_older_than
from gateway_project.celery import app


@app.task
def audit_purge_expired() -> int:
    """Delete rows past AUDIT_RETENTION_DAYS (0 keeps them forever). Idempotent."""
    from django.conf import settings

    if settings.AUDIT_RETENTION_DAYS <= 0:
        return 0
    return audit_purge_older_than(days=settings.AUDIT_RETENTION_DAYS)
