"""The SDK tests' helpers: the tools and prompts they send, the scripted models of the fake
upstreams, and the audit row of a request (the fixtures are in conftest.py)."""

from __future__ import annotations

import time

from audit.models import AuditEvent
from providers.models import ProviderModel

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
HELLO = [{"role": "user", "content": "Say hello"}]


Models = dict[tuple[str, str], ProviderModel]
SCRIPTED = (  # what the fake upstreams do for each model name: see tests/fakes/upstreams.py
    "ok",
    "tools",
    "fail-500",
    "fail-502",
    "fail-503",
    "fail-529",
    "fail-429",
    "fail-400",
    "stall",
    "midstream-drop",
    "error-after-200",
)


def audit_row(request_id: str, timeout: float = 5.0) -> AuditEvent:
    """The server writes rows off the response path; give its writer a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = AuditEvent.objects.filter(request_id=request_id).first()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no audit row for {request_id}")
