"""Prometheus metrics (`GET /metrics`, gateway_project/metrics.py).

- `instruments`: the metrics, named after the OpenTelemetry GenAI semantic conventions
  where they have one, in Prometheus spelling, and the gateway's own;
- `recording`: what one finished request adds to them (from its audit row, called by
  routing/proxy/finished.py);
- `scrape`: what is read when Prometheus asks (circuits, remaining budgets, the audit
  backlog), and the exposition;
- `sampler`: each worker's own audit queue, written where the other workers' scrapes see it.

Counters live in files shared by the workers of a server (prometheus-client's multiprocess
mode; the directory is set up by gateway_project/lib/metrics_dir.py), so any worker
answers a scrape with the whole server's counts.
"""
