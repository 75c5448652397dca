"""Provider services the admin shares with the importer and commands."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from gateway_project.lib.upsert import Change
from providers.models import Provider
from providers.services import (
    provider_create,
    provider_model_create,
    provider_model_update,
    provider_update,
)

pytestmark = pytest.mark.django_db


def test_provider_create_validates_and_takes_the_model_defaults(saved):
    provider = provider_create(name="vendor", kind=Provider.Kind.OPENAI, base_url="https://x.test")

    assert provider.timeout_s == Decimal(60)
    assert saved == ["Provider"]
    with pytest.raises(ValidationError):
        provider_create(name="vendor", kind=Provider.Kind.OPENAI)  # the name is taken


def test_provider_update_writes_only_a_change_and_refuses_floats(saved):
    provider = provider_create(name="vendor", kind=Provider.Kind.STUB)
    saved.clear()

    assert provider_update(provider=provider, name="vendor").change == Change.UNCHANGED
    assert provider_update(provider=provider, timeout_s=Decimal(30)).change == Change.UPDATED
    with pytest.raises(TypeError, match="Decimal"):
        provider_update(provider=provider, timeout_s=1.5)
    assert saved == ["Provider"]


def test_a_model_is_created_and_repriced_exactly():
    provider = provider_create(name="vendor", kind=Provider.Kind.STUB)
    model = provider_model_create(
        provider=provider, name="m", input_per_million=Decimal("0.15"), output_per_million=1
    )

    result = provider_model_update(provider_model=model, input_per_million=Decimal("0.25"))

    assert result.change == Change.UPDATED
    assert result.instance.input_per_million == Decimal("0.25")
    assert result.instance.output_per_million == Decimal(1)
