"""Through the proxy: served requests get ledger lines equal to their audit rows; refused
ones get none."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from billing.models import UsageLine
from tests.routing.proxy.test_handler import USER, audit_rows, post

pytestmark = pytest.mark.django_db(transaction=True)


async def test_served_requests_have_lines_and_refused_ones_none(personas):
    key = personas.acme.plaintext_key
    served = [
        await post(key, {"model": "echo", "messages": USER}),
        await post(key, {"model": "echo", "messages": USER, "stream": True}),
    ]
    _ = [part async for part in served[1].streaming_content]
    assert (await post(key, {"model": "nope", "messages": USER})).status_code == 404
    assert (await post("gwk_wrong", {"model": "echo", "messages": USER})).status_code == 401
    rows = await audit_rows()
    lines = await sync_to_async(
        lambda: {line.request_id: line for line in UsageLine.objects.all()}
    )()
    assert len(rows) == 4
    assert set(lines) == {response["x-request-id"] for response in served}
    for audit in rows:
        line = lines.get(audit.request_id)
        if line is not None:
            assert (line.cost_usd, line.total_tokens) == (audit.cost_usd, audit.total_tokens)
            assert (line.tenant_id, line.api_key_id) == (audit.tenant_id, audit.api_key_id)
            assert line.price_version_id == audit.price_version_id is not None
