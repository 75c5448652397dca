"""Prometheus metrics (`GET /metrics`, gateway_project/metrics.py).

- `instruments`: the metrics, named after the OpenTelemetry GenAI semantic conventions
  where they have one, in Prometheus spelling, and the gateway's own;
- `recording`: what one finished request adds to them (from its audit row, called by
  routing/proxy/finished.py), tallied in memory (`tally`);
- `scrape`: what is read when Prometheus asks (circuits, remaining budgets, the audit
  backlog), and the exposition;
- `background`: each worker's thread that writes its tally, and its own audit queue, where
  the other workers' scrapes see them (once a second).

Counters live in files shared by the workers of a server (prometheus-client's multiprocess
mode; the directory is set up by gateway_project/lib/metrics_dir.py), so any worker
answers a scrape with the whole server's counts.
"""
