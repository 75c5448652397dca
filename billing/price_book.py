"""The price book: which PriceVersion of a provider model is in force when, and keeping
it in step with ProviderModel's own price columns.

Why a signal: `providers` sits below `billing` in the layers (a lower app never imports
a higher one), so providers/services.py cannot ask billing to record a new price. Billing
listens instead: its AppConfig.ready() connects `provider_model_saved` to ProviderModel's
post_save (and `provider_model_saving` to its pre_save, to know the prices before), and a
save that changes the model's prices, to prices other than the version
in force, adds a version in force from now (from FIRST_VERSION_FROM for a model that has
none yet, so every request it ever served has a price). The receiver runs in the saving
transaction, so a price and its version commit or roll back together. A save that
changes no price adds nothing, even when a scheduled version has taken effect since the
columns were written (re-applying yesterday's YAML must not undo it); history is never
rewritten, only added to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from billing.models import PriceVersion
from providers.base import Price

FIRST_VERSION_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # as billing migration 0003


def price_version_in_force(
    *, provider_model_id: int, at: datetime | None = None
) -> PriceVersion | None:
    return (
        PriceVersion.objects.filter(
            provider_model_id=provider_model_id, effective_from__lte=at or timezone.now()
        )
        .order_by("-effective_from")
        .first()
    )


def _same_prices(version: PriceVersion, instance: Any) -> bool:
    return (version.input_per_million, version.output_per_million) == _prices(instance)


_BEFORE = "_billing_prices_before"  # set on the instance by the pre_save receiver


def _prices(instance: Any) -> tuple[Decimal, Decimal]:
    return Decimal(str(instance.input_per_million)), Decimal(str(instance.output_per_million))


def provider_model_saving(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """pre_save of providers.ProviderModel: the prices stored until now (one query)."""
    before = None
    if not raw and instance.pk is not None:
        before = (
            sender.objects.filter(pk=instance.pk)
            .values_list("input_per_million", "output_per_million")
            .first()
        )
    setattr(instance, _BEFORE, before)


def provider_model_saved(sender: type, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """post_save of providers.ProviderModel: a new price becomes a new version."""
    if raw:  # loaddata: fixtures bring their own versions
        return
    before = getattr(instance, _BEFORE, None)
    if before is not None and tuple(before) == _prices(instance):
        return  # no price was changed
    now = timezone.now()
    in_force = price_version_in_force(provider_model_id=instance.pk, at=now)
    if in_force is not None and _same_prices(in_force, instance):
        return
    has_any = (
        in_force is not None or PriceVersion.objects.filter(provider_model_id=instance.pk).exists()
    )
    input_price, output_price = _prices(instance)
    PriceVersion.objects.create(
        provider_model_id=instance.pk,
        input_per_million=input_price,
        output_per_million=output_price,
        effective_from=now if has_any else FIRST_VERSION_FROM,
    )


def connect() -> None:
    from django.db.models.signals import post_save, pre_save

    from providers.models import ProviderModel

    pre_save.connect(
        provider_model_saving, sender=ProviderModel, dispatch_uid="billing-price-before"
    )
    post_save.connect(
        provider_model_saved, sender=ProviderModel, dispatch_uid="billing-price-version"
    )


@dataclass(frozen=True)
class PriceBook:
    """The price book as the proxy's snapshot sees it: per provider model, the version in
    force when it was read and those that take effect later."""

    current: dict[int, Price]
    later: dict[int, tuple[Price, ...]]

    def prices_of(self, provider_model_id: int) -> tuple[Price | None, tuple[Price, ...]]:
        return self.current.get(provider_model_id), self.later.get(provider_model_id, ())


def _price(version: PriceVersion) -> Price:
    return Price(
        version_id=version.id,
        effective_from=version.effective_from,
        input_per_million=version.input_per_million,
        output_per_million=version.output_per_million,
        cached_input_per_million=version.cached_input_per_million,
    )


def load_price_book(provider_model_ids: Iterable[int], *, now: datetime) -> PriceBook:
    """Two queries whatever the number of models: the versions still to come, and the
    latest one already in force of each model."""
    ids = list(provider_model_ids)
    later: dict[int, list[Price]] = {}
    for version in PriceVersion.objects.filter(
        provider_model_id__in=ids, effective_from__gt=now
    ).order_by("provider_model_id", "effective_from"):
        later.setdefault(version.provider_model_id, []).append(_price(version))
    current: dict[int, Price] = {}
    in_force = PriceVersion.objects.filter(provider_model_id__in=ids, effective_from__lte=now)
    # Newest first per model; the first seen of each model is the one in force.
    for version in in_force.order_by("provider_model_id", "-effective_from"):
        current.setdefault(version.provider_model_id, _price(version))
    return PriceBook(current, {pm: tuple(prices) for pm, prices in later.items()})
