"""Commercial terms: what a tenant pays and how its statements are issued."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from billing import pricing

# Commercial terms: what a tenant pays and how its statements are issued. Read by
# statements and reports, never by the proxy: they are not part of the config snapshot.

# zoneinfo also knows these, but they name the server's own zone, not a place.
_NOT_A_PLACE = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_A_PLACE


def validate_time_zone(value: str) -> None:
    # Looked up in the list rather than by loading it: ZoneInfo("europe/paris") loads on a
    # case-insensitive file system and fails on the server.
    if value not in _time_zones():
        raise ValidationError(
            f"{value!r} is not an IANA time zone name (e.g. Europe/Paris, UTC).",
            code="invalid_time_zone",
        )


def validate_currency(value: str) -> None:
    try:
        pricing.minor_units(value)
    except ValueError as error:
        raise ValidationError(str(error), code="invalid_currency") from None


def validate_markup(value: Decimal) -> None:
    try:
        pricing.markup_check(value)
    except (TypeError, ValueError) as error:
        raise ValidationError(str(error), code="invalid_markup") from None


validate_month = RegexValidator(
    r"^[0-9]{4}-(0[1-9]|1[0-2])\Z", "A month is written YYYY-MM.", code="invalid_month"
)


class TenantTerms(models.Model):
    """A tenant's markup or discount, statement currency and billing time zone. A tenant
    without a row pays list prices, in USD, by UTC calendar months."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    markup_percent = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=0,
        validators=[validate_markup],
        help_text="Added to list prices (e.g. 15.00), or a discount (e.g. -10.00).",
    )
    currency = models.CharField(
        max_length=3,
        default=pricing.LEDGER_CURRENCY,
        validators=[validate_currency],
        help_text="ISO 4217 code statements are issued in.",
    )
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA name; billing periods are calendar months in this zone.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "tenant terms"
        verbose_name_plural = "tenant terms"
        ordering = ["tenant__slug"]

    def __str__(self) -> str:
        return f"terms of {self.tenant}"


class PriceOverride(models.Model):
    """A tenant's own price for one provider model, replacing the list price on its
    statements. An empty price leaves that token kind at the list price."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    provider_model = models.ForeignKey(
        "providers.ProviderModel", on_delete=models.CASCADE, related_name="+"
    )
    input_per_million = models.DecimalField(
        "input USD per 1M tokens",
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    output_per_million = models.DecimalField(
        "output USD per 1M tokens",
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    cached_input_per_million = models.DecimalField(
        "cached input USD per 1M tokens",
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__slug", "provider_model__name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "provider_model"], name="uniq_price_override")
        ]

    def __str__(self) -> str:
        return f"{self.tenant} price for {self.provider_model}"

    def clean(self) -> None:
        prices = (self.input_per_million, self.output_per_million, self.cached_input_per_million)
        if all(price is None for price in prices):
            raise ValidationError("Set at least one price; or delete the override.")


class ExchangeRate(models.Model):
    """Units of `currency` one US dollar buys for statements of `month`. Fixed once: a
    closed period's statement must read the same figure forever."""

    currency = models.CharField(max_length=3, validators=[validate_currency])
    month = models.CharField(max_length=7, validators=[validate_month], help_text="YYYY-MM")
    rate = models.DecimalField(
        max_digits=18,
        decimal_places=8,
        validators=[MinValueValidator(Decimal("0.00000001"))],
    )
    fixed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["currency", "month"], name="uniq_exchange_rate")
        ]

    def __str__(self) -> str:
        return f"{self.currency} {self.month} at {self.rate}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # billing.terms_services.exchange_rate_fix never saves a stored rate again; this
        # stops any other path (a shell, a script) from rewriting a closed period's figure.
        if not self._state.adding:
            raise ValidationError("An exchange rate is fixed per closed period: never saved again.")
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.currency == pricing.LEDGER_CURRENCY:
            raise ValidationError(
                {"currency": "USD is the ledger's currency: it converts at 1 without a rate."}
            )
