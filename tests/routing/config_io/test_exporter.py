"""routing/config_io/exporter.py: what an export writes and leaves out, read back unchanged."""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.config_io import config_dump, config_export, config_import
from routing.models import Route
from tenants.models import ApiKey, Tenant
from tests import factories
from tests.routing.config_io.support import (
    EVERYTHING,
    GOVERNED,
    MINIMAL,
    RESILIENT,
    configure_keys,
    empty_database,
    load,
)

pytestmark = pytest.mark.django_db


def test_export_writes_prices_as_decimal_strings_and_no_keys(acme: Tenant) -> None:
    issued = factories.make_key(acme)
    config_import(data=load(MINIMAL))

    text = config_dump(config_export())

    assert "input_per_million: '0.00'" in text
    assert issued.api_key.prefix not in text
    assert "gwk_" not in text


def test_the_new_fields_round_trip_and_defaults_are_left_out() -> None:
    config_import(data=load(GOVERNED))
    first = config_dump(config_export())

    assert "allowed_routes: [mine, echo]" in first
    assert "max_prompt_tokens: 8000" in first
    assert "max_output_tokens" not in first  # no limit: not written
    assert "default_max_tokens: 256" in first
    assert "alert_thresholds: [25, 90]" in first
    assert "alert_thresholds: []" in first
    assert first.count("alert_thresholds") == 2  # the default [50, 80, 100] is left out

    empty_database()
    config_import(data=load(first))
    assert config_dump(config_export()) == first


def test_resilience_and_caching_round_trip_and_defaults_are_left_out() -> None:
    config_import(data=load(RESILIENT))
    first = config_dump(config_export())

    for expected in [
        "first_byte_timeout_s: '2.5'",
        "stream_idle_timeout_s: '0.75'",
        "max_retries: 0",
        "circuit_failure_threshold: 2",
        "circuit_cooldown_s: 90",
        "cache_ttl_seconds: 300",
        "semantic_cache: true",
        "semantic_threshold: '0.9'",  # a decimal string, like money
        "hedge_after_ms: 750",
    ]:
        assert expected in first
    for name in [
        "first_byte_timeout_s",
        "stream_idle_timeout_s",
        "max_retries",
        "circuit_failure_threshold",
        "circuit_cooldown_s",
        "cache_ttl_seconds",
        "semantic_cache",
        "semantic_threshold",
        "hedge_after_ms",
    ]:
        assert first.count(name) == 1  # the second provider and route keep their defaults

    empty_database()
    config_import(data=load(first))
    assert config_dump(config_export()) == first
    assert not config_import(data=load(first)).changed


def test_a_non_default_threshold_is_exported_even_with_the_semantic_cache_off() -> None:
    data = load(MINIMAL)
    data["routes"][0]["semantic_threshold"] = "1"
    config_import(data=data)

    text = config_dump(config_export())

    assert "semantic_threshold: '1'" in text
    assert "semantic_cache" not in text
    empty_database()
    config_import(data=load(text))
    assert Route.objects.get().semantic_threshold == Decimal(1)


def test_an_export_names_keys_by_prefix_and_carries_no_secret() -> None:
    config_import(data=load(EVERYTHING))
    configure_keys()
    text = config_dump(config_export())
    for api_key in ApiKey.objects.all():
        assert api_key.key_hash not in text
    limited = ApiKey.objects.get(name="billing service")
    assert f"prefix: {limited.prefix}" in text
    assert "nothing special" not in text  # a key with nothing configured is not listed


def test_an_export_shows_the_price_in_force_not_the_columns_a_scheduled_price_left() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from billing.models import PriceVersion
    from providers.models import ProviderModel

    config_import(data=load(MINIMAL))
    model = ProviderModel.objects.order_by("pk").first()
    assert model is not None
    # A version scheduled earlier that has taken effect since: the proxy charges it, but
    # nothing rewrote the model's own columns when its time came.
    PriceVersion.objects.create(
        provider_model=model,
        input_per_million=Decimal("1.25"),
        output_per_million=Decimal("5.50"),
        effective_from=timezone.now() - timedelta(minutes=1),
    )
    model.refresh_from_db()
    assert model.input_per_million != Decimal("1.25")

    text = config_dump(config_export())

    assert "input_per_million: '1.25'" in text
    assert "output_per_million: '5.50'" in text
