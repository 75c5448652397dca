"""What a live traffic watcher is told of one finished request, and which ones it wants.

An event is built from the audit row off the response path (feed.py) and read field by
field: the row still holds the prompt and the response as the client and the upstream
wrote them, so only the gateway's own names, counts and timings are taken. The route is
sent only when it is a configured route (an unknown route's name is the client's text),
and neither the requested model, the key's prefix, error texts nor tags are sent.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from audit.row import AuditRow

# What a watcher may filter on. `status` takes a class (2xx, 4xx, 5xx), `ok` (2xx),
# `error` (400 and above) or one code.
STATUS_CLASSES = ("ok", "error", "2xx", "3xx", "4xx", "5xx")
_TENANT = re.compile(r"[-\w]{1,100}\Z", re.ASCII)
_CODE = re.compile(r"[1-5][0-9]{2}\Z")
# Which process served a request: the replica's host name and the worker's pid (a forked
# child learns its own).
_worker = [f"{socket.gethostname()}:{os.getpid()}"]
os.register_at_fork(
    after_in_child=lambda: _worker.__setitem__(0, f"{socket.gethostname()}:{os.getpid()}")
)


def live_event(row: AuditRow) -> dict[str, Any]:
    """The event for `row`: plain types only (the channel layer serializes it)."""
    return {
        "id": row.request_id,
        "time": row.created_at.isoformat(),
        "tenant": row.tenant_slug,
        "route": row.route if row.route_id is not None else "",
        "endpoint": str(row.metadata.get("endpoint") or "chat.completions"),
        "provider": row.provider,
        "model": row.model,
        "status": row.status_code,
        "outcome": row.outcome,
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "stream": row.stream,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "cost_usd": str(row.cost_usd),
        "fallback": row.fallback_used,
        "attempts": row.attempts,
        "worker": _worker[0],
    }


class FilterError(ValueError):
    """A filter the stream cannot apply (answered 400)."""


@dataclass(frozen=True, slots=True)
class LiveFilter:
    """The requests one watcher asked for: a tenant's (by slug), of a status; empty is all."""

    tenant: str = ""
    status: str = ""

    @classmethod
    def from_query(cls, query_string: bytes) -> LiveFilter:
        try:
            query = parse_qs(query_string.decode("ascii"), strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise FilterError("The query string must be ASCII.") from exc
        tenant = query.get("tenant", [""])[-1].strip()
        status = query.get("status", [""])[-1].strip().lower()
        if tenant and not _TENANT.match(tenant):
            raise FilterError("tenant must be a tenant's slug.")
        if status and status not in STATUS_CLASSES and not _CODE.match(status):
            raise FilterError(
                "status must be one of ok, error, 2xx, 3xx, 4xx, 5xx or a status code."
            )
        return cls(tenant=tenant, status=status)

    def matches(self, event: dict[str, Any]) -> bool:
        if self.tenant and event["tenant"] != self.tenant:
            return False
        status = self.status
        if not status:
            return True
        code: int = event["status"]
        if status == "ok":
            return 200 <= code < 300
        if status == "error":
            return code >= 400
        if status.endswith("xx"):
            return code // 100 == int(status[0])
        return code == int(status)
