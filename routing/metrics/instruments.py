"""The metrics, and how their label values are kept to a bounded set.

GenAI metrics follow the OpenTelemetry semantic conventions for generative AI (metric and
attribute names with dots as underscores, durations in seconds with `_seconds`, and the
conventions' bucket boundaries); the gateway's own are `gateway_*`.

Labels take only values the gateway itself chose or was configured with: tenant slugs,
route, provider and model names from the configuration, endpoint names, status codes,
outcomes, error codes of its own. What a client typed (an unknown model or route name, an
upstream's error code) becomes `_OTHER`, so no client can grow the number of series.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, values

from gateway_project.lib import metrics_dir

logger = logging.getLogger(__name__)

# prometheus_client picks its storage when first imported: per-process files when the
# settings had set PROMETHEUS_MULTIPROC_DIR by then (always, unless something imported it
# before Django's settings), else plain memory, which a scrape reads from this process only.
MULTIPROCESS: bool = getattr(values.ValueClass, "_multiprocess", False)
if MULTIPROCESS:
    metrics_dir.prepare(Path(os.environ[metrics_dir.ENV]))
else:
    logger.warning(
        "prometheus_client was imported before the settings: /metrics counts this process only"
    )

OTHER = "_OTHER"  # the conventions' value for "none of the known ones"

# The conventions' ExplicitBucketBoundaries.
TOKEN_BUCKETS = tuple(4**power for power in range(14))  # 1, 4, 16, ... 67108864
DURATION_BUCKETS = tuple(0.01 * 2**power for power in range(14))  # 0.01, 0.02, ... 81.92
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

GENAI = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
)

token_usage = Histogram(
    "gen_ai_client_token_usage",
    "Number of input and output tokens used (billed by the upstream), per request.",
    [*GENAI, "gen_ai_token_type"],
    buckets=TOKEN_BUCKETS,
)
request_duration = Histogram(
    "gen_ai_server_request_duration_seconds",
    "Gateway request duration, to the last byte of the answer, of requests sent upstream.",
    [*GENAI, "error_type"],
    buckets=DURATION_BUCKETS,
)
time_to_first_token = Histogram(
    "gen_ai_server_time_to_first_token_seconds",
    "Time to the first token of successful streamed answers.",
    GENAI,
    buckets=TTFT_BUCKETS,
)
time_per_output_token = Histogram(
    "gen_ai_server_time_per_output_token_seconds",
    "Time per output token after the first, of successful streamed answers.",
    GENAI,
    buckets=TPOT_BUCKETS,
)

requests = Counter(
    "gateway_requests",
    "Finished proxy requests (one per audit row).",
    ["tenant", "route", "endpoint", "provider", "model", "status", "outcome", "key"],
)
tokens = Counter(
    "gateway_tokens",
    "Tokens billed, by type (input, output).",
    ["tenant", "route", "provider", "model", "type", "key"],
)
cost = Counter(
    "gateway_cost_usd",
    "Cost of the requests in USD at the price book's prices (the ledger has the exact sums).",
    ["tenant", "route", "provider", "model", "key"],
)
cache_lookups = Counter(
    "gateway_cache_lookups",
    "Response cache lookups, by result (exact, semantic, miss).",
    ["tenant", "route", "result"],
)
fallbacks = Counter(
    "gateway_fallbacks",
    "Requests that were answered by (or tried) a target other than the first in order.",
    ["tenant", "route"],
)
retries = Counter(
    "gateway_upstream_retries",
    "Upstream calls that repeated an earlier call to the same target.",
    ["tenant", "route"],
)
refusals = Counter(
    "gateway_refusals",
    "Requests refused by governance: rate_limit, budget, governance_unavailable.",
    ["tenant", "route", "reason", "key"],
)

# Each worker's audit queue (routing/metrics/sampler.py): summed over the live workers.
audit_pending = Gauge(
    "gateway_audit_pending_rows",
    "Audit rows queued in the workers' memory, not yet written.",
    multiprocess_mode="livesum",
)
audit_written = Counter("gateway_audit_rows_written", "Audit rows written to the database.")
audit_write_failures = Counter(
    "gateway_audit_write_failures", "Audit batches that could not be written (database away)."
)
audit_spilled = Counter(
    "gateway_audit_rows_spilled", "Audit rows moved to spool files (a full queue, a shutdown)."
)
