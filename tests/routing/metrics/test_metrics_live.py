"""/metrics of a real gateway with two worker processes: whichever worker answers the
scrape, the counts are the whole server's, and they stay whole when a worker dies.

Each worker writes its own file (counter_<pid>.db in the server's directory under
GATEWAY_METRICS_DIR, gateway_project/lib/metrics_dir.py); reading those files one at a
time shows that both workers served some of the requests."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from gateway_project.lib import metrics_dir
from tests.live import GatewayProcess, stop_quietly
from tests.personas import Personas
from tests.routing.metrics.support import read

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
BATCH = 16


@pytest.fixture
def gateway2(personas: Personas, django_db_blocker) -> Iterator[GatewayProcess]:
    """A gateway with two workers; the stub answers after 30 ms, so that requests overlap
    and both workers take some."""
    personas.provider.stub_delay_ms = 30
    personas.provider.save()
    process = GatewayProcess(workers=2).start()
    yield process
    stop_quietly(process, django_db_blocker=django_db_blocker)


def server_dir(process: GatewayProcess) -> Path:
    """The directory of this gateway's files: its uvicorn master owns it."""
    assert process.process is not None
    master = process.process.pid
    return Path(settings.GATEWAY_METRICS_DIR) / f"{master}-{metrics_dir.start_time(master)}"


def per_worker(directory: Path, tmp_path: Path, name: str) -> dict[int, float]:
    """`name` (a series as support.read names it) in each worker's own counter file."""
    counts = {}
    for path in sorted(directory.glob("counter_*.db")):
        alone = tmp_path / path.stem
        alone.mkdir(exist_ok=True)
        shutil.copy(path, alone / path.name)
        counts[int(path.stem.split("_")[1])] = read(str(alone)).get(name, 0.0)
    return counts


def ask(base_url: str, key: str, count: int) -> None:
    """`count` requests, 8 at a time, each on a new connection (a kept-alive connection
    would stay with one worker)."""

    def one(_: int) -> int:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            return client.post(
                "/v1/chat/completions",
                json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {key}"},
            ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(count))) == [200] * count


def scraped(base_url: str) -> dict[str, float]:
    response = httpx.get(f"{base_url}/metrics", timeout=10)  # from 127.0.0.1: allowed
    assert response.status_code == 200, response.text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "gateway_requests_total" and sample.labels["tenant"] == "acme":
                values["requests"] = values.get("requests", 0.0) + sample.value
            elif sample.name == "gen_ai_client_token_usage_count":
                token_type = sample.labels["gen_ai_token_type"]
                values[token_type] = values.get(token_type, 0.0) + sample.value
            elif sample.name == "gateway_audit_pending_rows":
                values["pending"] = sample.value
    return values


REQUESTS = (
    'gateway_requests_total{endpoint="chat",model="echo",outcome="success",provider="local",'
    'route="echo",status="200",tenant="acme"}'
)


def test_the_counts_add_up_across_both_workers(gateway2, personas: Personas, tmp_path):
    directory = server_dir(gateway2)
    sent = 0
    for _ in range(10):  # until both workers have served some
        ask(gateway2.base_url, personas.acme.plaintext_key, BATCH)
        sent += BATCH
        counts = per_worker(directory, tmp_path, REQUESTS)
        if len([c for c in counts.values() if c > 0]) >= 2:
            break
    served = {pid: count for pid, count in counts.items() if count > 0}
    assert len(served) == 2, f"one worker served all {sent} requests: {counts}"
    assert sum(served.values()) == sent

    for _ in range(6):  # whichever worker answers, the counts are the same
        values = scraped(gateway2.base_url)
        assert (values["requests"], values["input"], values["output"]) == (sent, sent, sent)

    # A worker dies: uvicorn starts another, which drops the dead one's live gauge (its
    # queue is gone) and keeps its counters (the requests it served still happened).
    dead = next(iter(served))
    os.kill(dead, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (directory / f"gauge_livesum_{dead}.db").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (directory / f"gauge_livesum_{dead}.db").exists()
    assert (directory / f"counter_{dead}.db").exists()
    ask(gateway2.base_url, personas.acme.plaintext_key, BATCH)
    values = scraped(gateway2.base_url)
    assert values["requests"] == sent + BATCH
    assert "pending" in values  # the live workers' audit queues, summed
