"""The price book: dated versions of each provider model's prices, only ever added to."""

from __future__ import annotations

import importlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing.models import PriceVersion
from billing.price_book import FIRST_VERSION_FROM, price_version_in_force
from billing.services import price_version_create
from providers.services import provider_model_create, provider_model_update
from tests import factories

pytestmark = pytest.mark.django_db


def _versions(pm) -> list[tuple[Decimal, Decimal]]:
    return [
        (v.input_per_million, v.output_per_million)
        for v in PriceVersion.objects.filter(provider_model=pm).order_by("effective_from")
    ]


def test_a_new_model_gets_a_first_version_in_force_since_the_epoch():
    provider = factories.make_provider()
    pm = provider_model_create(
        provider=provider, name="m", input_per_million=Decimal(3), output_per_million=Decimal(6)
    )
    (version,) = PriceVersion.objects.filter(provider_model=pm)
    assert version.effective_from == FIRST_VERSION_FROM
    assert (version.input_per_million, version.output_per_million) == (3, 6)


def test_a_price_change_through_providers_adds_a_version_and_keeps_the_old_one():
    pm = factories.make_model(factories.make_provider())
    provider_model_update(provider_model=pm, input_per_million=Decimal("1.5"))
    assert _versions(pm) == [(Decimal(1), Decimal(2)), (Decimal("1.5"), Decimal(2))]
    assert price_version_in_force(provider_model_id=pm.id).input_per_million == Decimal("1.5")


def test_a_save_that_changes_no_price_adds_no_version():
    pm = factories.make_model(factories.make_provider())
    provider_model_update(provider_model=pm, context_window=1000)
    pm.save()
    assert len(_versions(pm)) == 1


def test_a_save_after_a_scheduled_price_took_effect_does_not_undo_it():
    pm = factories.make_model(factories.make_provider())
    # Scheduled earlier, in force since an hour ago; the model's columns still say 1 and 2.
    PriceVersion.objects.create(
        provider_model=pm,
        input_per_million=Decimal(9),
        output_per_million=Decimal(9),
        effective_from=timezone.now() - timedelta(hours=1),
    )
    provider_model_update(provider_model=pm, context_window=1000)
    pm.refresh_from_db()
    pm.save()  # the importer re-applying an unchanged configuration
    assert price_version_in_force(provider_model_id=pm.id).input_per_million == 9
    assert len(_versions(pm)) == 2
    # A price really changed through providers still makes a version.
    provider_model_update(provider_model=pm, input_per_million=Decimal(3))
    assert price_version_in_force(provider_model_id=pm.id).input_per_million == 3


def test_a_version_created_now_becomes_the_models_price():
    pm = factories.make_model(factories.make_provider())
    price_version_create(
        provider_model=pm,
        input_per_million=Decimal(5),
        output_per_million=Decimal(7),
        cached_input_per_million=Decimal("0.5"),
    )
    pm.refresh_from_db()
    assert (pm.input_per_million, pm.output_per_million) == (5, 7)
    assert _versions(pm) == [(Decimal(1), Decimal(2)), (Decimal(5), Decimal(7))]
    in_force = price_version_in_force(provider_model_id=pm.id)
    assert in_force.cached_input_per_million == Decimal("0.5")


def test_a_future_version_leaves_the_price_in_force_alone():
    pm = factories.make_model(factories.make_provider())
    later = timezone.now() + timedelta(days=3)
    price_version_create(
        provider_model=pm,
        input_per_million=Decimal(9),
        output_per_million=Decimal(9),
        effective_from=later,
    )
    pm.refresh_from_db()
    assert pm.input_per_million == 1
    assert price_version_in_force(provider_model_id=pm.id).input_per_million == 1
    assert price_version_in_force(provider_model_id=pm.id, at=later).input_per_million == 9


def test_history_is_not_rewritten():
    pm = factories.make_model(factories.make_provider())
    with pytest.raises(ValidationError):
        price_version_create(
            provider_model=pm,
            input_per_million=Decimal(1),
            output_per_million=Decimal(1),
            effective_from=timezone.now() - timedelta(days=1),
        )


def test_the_migration_makes_a_first_version_of_every_model():
    from django.apps import apps

    provider = factories.make_provider()
    first = factories.make_model(provider, "a", input_per_million="0.25")
    second = factories.make_model(provider, "b", output_per_million="8")
    PriceVersion.objects.all().delete()
    migration = importlib.import_module("billing.migrations.0003_price_book_and_ledger")
    migration.first_versions(apps, None)
    assert _versions(first) == [(Decimal("0.25"), Decimal(2))]
    assert _versions(second) == [(Decimal(1), Decimal(8))]
    assert {v.effective_from for v in PriceVersion.objects.all()} == {FIRST_VERSION_FROM}


def test_the_admin_adds_versions_and_edits_none(admin_client):
    from django.urls import reverse

    pm = factories.make_model(factories.make_provider())
    response = admin_client.post(
        reverse("admin:billing_priceversion_add"),
        {
            "provider_model": pm.id,
            "input_per_million": "4",
            "output_per_million": "8",
            "cached_input_per_million": "",
            "effective_from_0": timezone.now().strftime("%Y-%m-%d"),
            "effective_from_1": timezone.now().strftime("%H:%M:%S"),
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert _versions(pm)[-1] == (Decimal(4), Decimal(8))
    version = PriceVersion.objects.filter(provider_model=pm).first()
    change = reverse("admin:billing_priceversion_change", args=[version.id])
    admin_client.post(change, {"input_per_million": "0", "output_per_million": "0"})
    version.refresh_from_db()
    assert version.input_per_million != 0
    delete = reverse("admin:billing_priceversion_delete", args=[version.id])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert PriceVersion.objects.filter(pk=version.pk).exists()
