"""Documents and helpers the config_io tests share."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from django.conf import settings

from audit.models import RedactionRule
from billing.models import RateLimit
from billing.services import (
    BudgetSpec,
    RateLimitSpec,
    Subject,
    budgets_replace,
    rate_limits_replace,
)
from providers.models import Provider
from routing.config_io import config_load
from routing.models import Route
from tenants.models import Tenant
from tenants.services import api_key_revoke
from tests import factories

SHARED_EXAMPLE = Path(settings.BASE_DIR).parent / "shared" / "gateway.example.yaml"
DOCS_EXAMPLE = Path(settings.BASE_DIR) / "docs" / "gateway.example.yaml"


def load(text: str) -> dict:
    return config_load(text)


MINIMAL = """
providers:
  - name: local
    kind: stub
    models:
      - {name: echo, input_per_million: "0", output_per_million: "0"}
      - {name: echo2, input_per_million: "0", output_per_million: "0"}
routes:
  - name: echo
    targets:
      - {provider: local, model: echo}
redaction_rules:
  - {name: e-mail, detector: email, replacement: "[EMAIL]", scope: audit}
"""


GOVERNED = """
providers:
  - name: local
    kind: stub
    models:
      - {name: echo, input_per_million: "0", output_per_million: "0"}
tenants:
  - slug: acme
    name: Acme
    allowed_routes: [mine, echo, mine]
    policy: {max_prompt_tokens: 8000, max_n: 1, max_depth: 16}
    rate_limits:
      - {rpm: 60}
      - {model: echo, tpm: 1000}
    budgets:
      - {period: monthly, max_cost_usd: "10", alert_thresholds: [90, 25]}
      - {period: daily, max_tokens: 500, alert_thresholds: [100, 80, 50]}
      - {period: weekly, max_tokens: 900, hard: false, alert_thresholds: []}
routes:
  - name: echo
    default_max_tokens: 256
    targets: [{provider: local, model: echo}]
  - name: mine
    tenant: acme
    targets: [{provider: local, model: echo}]
rate_limits:
  - {rpm: 6000}
  - {tpm: 5000000}
"""


RESILIENT = """
providers:
  - name: local
    kind: stub
    first_byte_timeout_s: 2.5
    stream_idle_timeout_s: "0.75"
    max_retries: 0
    circuit_failure_threshold: 2
    circuit_cooldown_s: 90
    models:
      - {name: echo, input_per_million: "0", output_per_million: "0"}
  - name: plain
    kind: stub
routes:
  - name: cached
    cache_ttl_seconds: 300
    semantic_cache: true
    semantic_threshold: "0.9"
    hedge_after_ms: 750
    targets: [{provider: local, model: echo}]
  - name: plain
    targets: [{provider: local, model: echo}]
"""


EVERYTHING = """
providers:
  - name: local
    kind: stub
    stub_delay_ms: 5
    max_retries: 3
    models:
      - {name: echo, input_per_million: "0.15", output_per_million: "0.60", context_window: 8192}
      - {name: echo2, input_per_million: "1", output_per_million: "2"}
  - name: remote
    kind: openai
    base_url: https://llm.example.com/v1
    api_key_env: REMOTE_API_KEY
    timeout_s: 45
    connect_timeout_s: "2.5"
    first_byte_timeout_s: 10
    stream_idle_timeout_s: 20
    circuit_failure_threshold: 7
    circuit_cooldown_s: 90
    enabled: false
    models:
      - {name: big, input_per_million: "2.50", output_per_million: "10.00"}
tenants:
  - slug: acme
    name: Acme Corp
    metadata: {team: platform, cost_centre: 42}
    allowed_routes: [chat, acme-private]
    policy: {max_prompt_tokens: 4000, max_output_tokens: 1000, max_n: 2, max_body_bytes: 100000, max_messages: 50, max_depth: 8}
    rate_limits:
      - {rpm: 600, tpm: 100000}
      - {model: echo, rpm: 60}
      - {model: echo2, tpm: 5000, enabled: false}
    budgets:
      - {period: monthly, max_cost_usd: "500.00", hard: true, alert_thresholds: [50, 90]}
      - {period: daily, max_tokens: 200000, hard: false, enabled: false}
  - slug: globex
    status: suspended
    rate_limits: {rpm: 10}
routes:
  - name: chat
    strategy: weighted
    description: the default chat route
    default_max_tokens: 512
    cache_ttl_seconds: 300
    semantic_cache: true
    semantic_threshold: "0.9"
    hedge_after_ms: 250
    targets:
      - {provider: local, model: echo, weight: 95}
      - {provider: local, model: echo2, weight: 5, enabled: false}
      - {provider: remote, model: big}
    rate_limits: {rpm: 1000}
    budgets:
      - {period: weekly, max_cost_usd: "25.50"}
  - name: acme-private
    tenant: acme
    enabled: false
    targets:
      - {provider: local, model: echo2}
redaction_rules:
  - {name: e-mail, detector: email, replacement: "[EMAIL]", scope: audit}
  - {name: ticket, pattern: "TICKET-[0-9]+", replacement: "[TICKET]", scope: audit_and_upstream, enabled: false}
rate_limits:
  - {rpm: 100000}
  - {tpm: 9000000, enabled: false}
"""


def empty_database() -> None:
    Route.objects.all().delete()
    Tenant.objects.all().delete()
    Provider.objects.all().delete()
    RedactionRule.objects.all().delete()
    RateLimit.objects.all().delete()


def configure_keys() -> None:
    """Keys with every setting a key can carry: limits of the key scope, budgets, policy,
    allowed routes; one plain key (nothing configured) and one revoked."""

    acme = Tenant.objects.get(slug="acme")
    limited = factories.make_key(
        acme, name="billing service", allowed_routes=["chat"], max_output_tokens=256, max_n=1
    ).api_key
    rate_limits_replace(
        subject=Subject.of(limited),
        rate_limits=[RateLimitSpec(rpm=30, tpm=20000), RateLimitSpec(tpm=1000, enabled=False)],
    )
    budgets_replace(
        subject=Subject.of(limited),
        budgets=[BudgetSpec(period="monthly", max_cost_usd=Decimal("12.34"), hard=True)],
    )
    capped = factories.make_key(acme, name="batch jobs").api_key
    rate_limits_replace(subject=Subject.of(capped), rate_limits=[RateLimitSpec(rpm=5)])
    factories.make_key(acme, name="nothing special")
    revoked = factories.make_key(Tenant.objects.get(slug="globex"), name="old").api_key
    rate_limits_replace(subject=Subject.of(revoked), rate_limits=[RateLimitSpec(rpm=1)])
    api_key_revoke(api_key=revoked)
