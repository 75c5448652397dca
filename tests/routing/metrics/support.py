"""Reading the metrics back in tests: the series a block of code moved, and by how much.

The counters live in this test process's multiprocess files and grow over the whole run,
so tests compare before and after. Histograms are known by their `_count` (buckets and
sums are left out), gauges are left out (a background thread samples the audit queue
into one), and so are the audit writer's own counters. A series is written
`name{label="value",...}` without its empty labels, as Prometheus reads them."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from gateway_project.lib import metrics_dir


def series_name(name: str, labels: dict[str, str]) -> str:
    shown = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()) if value)
    return f"{name}{{{shown}}}"


def read(path: str | None = None) -> dict[str, float]:
    """The counters and histogram counts in the files under `path` (default: this
    process's directory)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MultiProcessCollector(None, path=path or os.environ[metrics_dir.ENV]))
    values: dict[str, float] = {}
    for family in registry.collect():
        if family.type == "gauge" or family.name.startswith("gateway_audit_"):
            continue
        for sample in family.samples:
            if not sample.name.endswith(("_bucket", "_sum")):
                values[series_name(sample.name, sample.labels)] = sample.value
    return values


class Changes:
    """`changes = Changes()`, then `changes()`: what moved since."""

    def __init__(self) -> None:
        self.before = read()

    def __call__(self, prefix: str = "") -> dict[str, float]:
        """The series whose name starts with `prefix` that moved, and by how much."""
        return {
            name: round(value - self.before.get(name, 0.0), 12)
            for name, value in read().items()
            if name.startswith(prefix) and value != self.before.get(name, 0.0)
        }
