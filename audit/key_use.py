"""Telling tenants when their API keys were last used, from the audit rows the writer stores.

A busy key is written at most once per AUDIT_KEY_TOUCH_SECONDS, not once per batch: the
writer remembers when it last wrote each key.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError

logger = logging.getLogger(__name__)
_REMEMBERED_MAX = 100_000  # keys whose last write time is remembered


def last_used(rows: list[dict]) -> dict[int, datetime]:
    """When each API key with a row in `rows` (prepared rows) was last used."""
    found: dict[int, datetime] = {}
    for fields in rows:
        key_id = fields.get("api_key_id")
        if key_id is not None:
            when = fields["created_at"]
            found[key_id] = max(when, found.get(key_id, when))
    return found


class KeyUse:
    """The key last-use times one writer has written (its thread only: not locked)."""

    def __init__(self) -> None:
        self._written: dict[int, datetime] = {}

    def record(self, rows: list[dict]) -> None:
        """Write the last-use time of the keys in `rows` that are due one; a database
        error is logged, never raised (the rows themselves are already written)."""
        from tenants.services import api_keys_touch

        every = timedelta(seconds=settings.AUDIT_KEY_TOUCH_SECONDS)
        written = self._written
        due = {
            key_id: when
            for key_id, when in last_used(rows).items()
            if key_id not in written or when - written[key_id] >= every
        }
        if not due:
            return
        try:
            api_keys_touch(last_used=due)
        except DatabaseError:
            logger.warning("could not record key last-use times", exc_info=True)
            return
        if len(written) > _REMEMBERED_MAX:
            written.clear()  # forgetting costs one early write per key, nothing more
        written.update(due)
