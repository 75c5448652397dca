"""Writes for commercial terms: a tenant's markup, currency and time zone, its price
overrides, and the exchange rates fixed per period. The admin calls these (and so will
the management API and commands): one write path, validated here.

None of these models is in the proxy's snapshot: a change is read by the next statement
or report, and invalidates nothing on the hot path.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from billing.models import ExchangeRate, PriceOverride, TenantTerms
from gateway_project.lib.upsert import Change, Upserted, upsert
from providers.models import ProviderModel
from tenants.models import Tenant


def _decimal(value: Decimal | int | str | None, field: str) -> Decimal | None:
    """A price or percentage as a Decimal; a float is refused (it has already lost cents)."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError(
            {field: f"Give a Decimal, not a {type(value).__name__}."}, code="invalid"
        )
    try:
        return Decimal(value)
    except ArithmeticError:
        raise ValidationError({field: f"{value!r} is not a number."}, code="invalid") from None


def tenant_terms_set(
    *,
    tenant: Tenant,
    markup_percent: Decimal | int | str,
    currency: str,
    time_zone: str,
) -> Upserted[TenantTerms]:
    """Set all of a tenant's terms at once, written only if something differs.

    `currency` is an ISO 4217 code (any case); `time_zone` an IANA name, exactly spelt.
    """
    values = {
        "markup_percent": _decimal(markup_percent, "markup_percent"),
        "currency": currency.strip().upper(),
        "time_zone": time_zone.strip(),
    }
    with transaction.atomic():
        return upsert(TenantTerms, lookup={"tenant": tenant}, values=values)


def tenant_terms_delete(*, terms: TenantTerms) -> None:
    """Back to the defaults: list prices, USD, UTC months."""
    terms.delete()


def price_override_set(
    *,
    tenant: Tenant,
    provider_model: ProviderModel,
    input_per_million: Decimal | int | str | None = None,
    output_per_million: Decimal | int | str | None = None,
    cached_input_per_million: Decimal | int | str | None = None,
) -> Upserted[PriceOverride]:
    """Give the tenant its own prices for one model (None: that kind stays at list price).
    Replaces the tenant's previous override for the model, if any."""
    values = {
        name: _decimal(value, name)
        for name, value in (
            ("input_per_million", input_per_million),
            ("output_per_million", output_per_million),
            ("cached_input_per_million", cached_input_per_million),
        )
    }
    with transaction.atomic():
        return upsert(
            PriceOverride,
            lookup={"tenant": tenant, "provider_model": provider_model},
            values=values,
        )


def price_override_delete(*, override: PriceOverride) -> None:
    override.delete()


def exchange_rate_fix(
    *, currency: str, month: str, rate: Decimal | int | str
) -> Upserted[ExchangeRate]:
    """Fix the rate (units of `currency` per US dollar) for statements of `month` (YYYY-MM).

    Fixing the same rate again changes nothing; a different one is refused: the rate is
    fixed per closed period, and a statement issued with it must read the same forever.
    """
    code, wanted = currency.strip().upper(), _decimal(rate, "rate")
    if wanted is None:
        raise ValidationError({"rate": "A rate is required."}, code="required")
    existing = ExchangeRate.objects.filter(currency=code, month=month).first()
    if existing is None:
        fixed = ExchangeRate(currency=code, month=month, rate=wanted)
        fixed.full_clean()
        try:
            with transaction.atomic():
                fixed.save()
        except IntegrityError:
            # Someone fixed it between our read and our insert: theirs stands.
            existing = ExchangeRate.objects.get(currency=code, month=month)
        else:
            return Upserted(fixed, Change.CREATED)
    if existing.rate != wanted:
        raise ValidationError(
            {
                "rate": f"The {code} rate for {month} is {existing.rate}: it is fixed per "
                "closed period and cannot be changed."
            },
            code="rate_fixed",
        )
    return Upserted(existing, Change.UNCHANGED)
