"""routing/config_io/parse.py and reader.py: the whole document is validated before anything
is written, and every problem is reported with its path."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from providers.models import Provider
from routing.config_io import ConfigError, config_import
from routing.models import Route
from routing.services import route_upsert
from tenants.models import Tenant
from tests.routing.config_io.support import MINIMAL, load

pytestmark = pytest.mark.django_db


def test_validation_errors_name_every_problem_and_write_nothing() -> None:
    text = """
providers:
  - name: openai
    kind: openai
    api_key: abc
    models:
      - {name: m, input_per_million: 0.15, output_per_million: "x"}
  - {name: other, kind: nope}
tenants:
  - {slug: acme, status: sleeping, budgets: [{period: daily}]}
routes:
  - name: r
    tenant: ghost
    strategy: fastest
    targets:
      - {provider: openai, model: m}
      - {provider: openai, model: missing}
      - {provider: nobody, model: m, wieght: 2}
redaction_rules:
  - {name: a, detector: email, pattern: "x+"}
  - {name: b, pattern: "(a+)+"}
  - {name: b, detector: regex}
"""
    with pytest.raises(ConfigError) as caught:
        config_import(data=load(text), source="gateway.yaml")

    message = str(caught.value)
    assert message.startswith("gateway.yaml: ")
    for expected in [
        "providers[0].api_key: looks like a secret",
        "providers[0].models[0].input_per_million: write amounts as quoted decimal strings",
        "providers[0].models[0].output_per_million: 'x' is not a decimal number",
        "providers[1].kind: 'nope' is not one of",
        "tenants[0].status: 'sleeping' is not one of",
        "tenants[0].budgets[0]: set max_tokens, max_cost_usd or both",
        "routes[0].strategy: 'fastest' is not one of",
        "routes[0].targets[2].wieght: unknown field",
        "redaction_rules[0].pattern: a pattern only goes with the regex detector",
        "redaction_rules[1].pattern: The pattern nests",
        "redaction_rules[2].pattern: the regex detector needs a pattern",
        "redaction_rules[2]: duplicate redaction rule name",
    ]:
        assert expected in message
    assert not Provider.objects.exists()
    assert not Tenant.objects.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("providers: [{name: p, kind: openai, api_key_env: sk-abcdefghijklmnopqrstuvwxyz12}]",
         "providers[0].api_key_env: contains what looks like an API key"),
        ("providers: [{name: p, kind: openai, api_key_env: 'my key'}]",
         "must be the NAME of an environment variable"),
        ("tenants: [{slug: t, metadata: {note: 'AKIAIOSFODNN7EXAMPLE'}}]",
         "tenants[0].metadata.note: contains what looks like an API key"),
        ("providers: [{name: p, kind: stub, password: hunter2}]",
         "providers[0].password: looks like a secret"),
    ],
)  # fmt: skip
def test_secrets_are_refused(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_import(data=load(text))
    assert expected in str(caught.value)


def test_other_versions_and_shapes_are_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported version 2"):
        config_import(data={"version": 2})
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_import(data=["providers"])
    with pytest.raises(ConfigError, match="routes: expected a list"):
        config_import(data={"routes": {"name": "x"}})


def test_the_new_fields_are_validated() -> None:
    text = """
tenants:
  - slug: acme
    allowed_routes: chat
    policy: {max_n: 0, max_depth: 40000, max_messages: "10", max_body_bytes: true, max_cats: 5}
    budgets:
      - {max_tokens: 5, alert_thresholds: [0, 50]}
      - {max_tokens: 5, alert_thresholds: [101]}
      - {max_tokens: 5, alert_thresholds: 80}
      - {max_tokens: 5, alert_thresholds: [50.5]}
  - slug: globex
    allowed_routes: ["", 7]
routes:
  - name: r
    default_max_tokens: 0
    targets: [{provider: local, model: echo}]
"""
    with pytest.raises(ConfigError) as caught:
        config_import(data=load(text))

    message = str(caught.value)
    for expected in [
        "tenants[0].allowed_routes: expected a list of names, got a string",
        "tenants[0].policy.max_n: expected a whole number from 1 to 32767, got 0",
        "tenants[0].policy.max_depth: expected a whole number from 1 to 32767, got 40000",
        "tenants[0].policy.max_messages: expected a whole number from 1",
        "tenants[0].policy.max_body_bytes: expected a whole number from 1",
        "tenants[0].policy.max_cats: unknown field",
        "tenants[0].budgets[0].alert_thresholds: Thresholds are whole percentages from 1 to 100; not 0.",
        "tenants[0].budgets[1].alert_thresholds: Thresholds are whole percentages from 1 to 100; not 101.",
        "tenants[0].budgets[2].alert_thresholds: expected a list of percentages",
        "tenants[0].budgets[3].alert_thresholds: Thresholds are whole percentages",
        "tenants[1].allowed_routes[0]: expected a name",
        "tenants[1].allowed_routes[1]: expected a name",
        "routes[0].default_max_tokens: expected a whole number from 1",
    ]:
        assert expected in message
    assert not Tenant.objects.exists()


def test_resilience_caching_and_hedging_are_validated() -> None:
    text = """
providers:
  - name: local
    kind: stub
    first_byte_timeout_s: 0
    stream_idle_timeout_s: "0.0005"
    max_retries: 40000
    circuit_failure_threshold: 0
    circuit_cooldown_s: -5
  - name: other
    kind: stub
    first_byte_timeout_s: soon
    max_retries: true
routes:
  - name: r
    cache_ttl_seconds: "60"
    semantic_cache: "yes"
    semantic_threshold: "0"
    hedge_after_ms: 0
    targets: [{provider: local, model: echo}]
  - name: s
    semantic_threshold: "1.5"
    targets: [{provider: local, model: echo}]
  - name: t
    semantic_threshold: "0.9505"
    hedge_after_ms: 2.5
    targets: [{provider: local, model: echo}]
  - name: u
    semantic_threshold: high
    targets: [{provider: local, model: echo}]
"""
    with pytest.raises(ConfigError) as caught:
        config_import(data=load(text))

    message = str(caught.value)
    for expected in [
        "providers[0].first_byte_timeout_s: expected a number of seconds > 0, got 0",
        "providers[0].stream_idle_timeout_s: '0.0005' has more than 3 decimal places",
        "providers[0].max_retries: expected a whole number from 0 to 32767, got 40000",
        "providers[0].circuit_failure_threshold: expected a whole number from 1 to 32767, got 0",
        "providers[0].circuit_cooldown_s: expected a whole number >= 0, got -5",
        "providers[1].first_byte_timeout_s: expected a number of seconds > 0, got 'soon'",
        "providers[1].max_retries: expected a whole number >= 0, got True",
        "routes[0].cache_ttl_seconds: expected a whole number >= 0, got '60'",
        "routes[0].semantic_cache: expected true or false, got 'yes'",
        "routes[0].semantic_threshold: The semantic threshold is a similarity above 0 and at most 1",
        "routes[0].hedge_after_ms: expected a whole number from 1",
        "routes[1].semantic_threshold: The semantic threshold is a similarity above 0",
        "routes[2].semantic_threshold: The semantic threshold is a similarity above 0",
        "routes[2].hedge_after_ms: expected a whole number from 1",
        "routes[3].semantic_threshold: expected a decimal string like \"0.95\", got 'high'",
    ]:
        assert expected in message
    assert not Provider.objects.exists()


def test_a_plain_number_threshold_reads_as_its_decimal() -> None:
    data = load(MINIMAL)
    data["routes"][0].update(semantic_cache=True, semantic_threshold=0.9)

    config_import(data=data)

    assert Route.objects.get().semantic_threshold == Decimal("0.9")


def test_route_upsert_applies_the_same_threshold_rule_as_the_reader() -> None:
    with pytest.raises(ValidationError) as caught:
        route_upsert(name="r", semantic_threshold=Decimal("1.001"))

    assert "above 0 and at most 1" in caught.value.message_dict["semantic_threshold"][0]
    assert not Route.objects.exists()
    assert route_upsert(name="r", semantic_threshold=Decimal("0.9000")).instance.pk
