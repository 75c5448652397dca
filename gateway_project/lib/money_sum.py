"""Exact sums of money columns on every database.

Money is a DecimalField with 10 decimal places. Postgres sums NUMERIC exactly. SQLite (the
embedded default) keeps such a column as REAL and SUM() adds floats: a report's total came
back as 0.2969205999999999 for 0.2969206. There each value is summed as a whole number of
1e-10 units instead (exact up to $922 million), and `money_value` turns that back into a
Decimal. A stored value keeps its exact units as long as it has at most 15 significant
digits (under $100,000 for one row at 10 places), which is SQLite's own limit anyway.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import connection
from django.db.models import BigIntegerField, F, Sum
from django.db.models.functions import Cast, Round

MONEY_PLACES = 10


def money_sum(column: str) -> Sum:
    """Sum(column) for an annotate()/aggregate(); read the result with money_value."""
    if connection.vendor == "sqlite":
        units = Cast(Round(F(column) * 10**MONEY_PLACES), BigIntegerField())
        return Sum(units, output_field=BigIntegerField())
    return Sum(column)


def money_value(summed: object) -> Decimal:
    """What money_sum gave, as a Decimal (0 for an empty set)."""
    if summed is None:
        return Decimal(0)
    if isinstance(summed, int):
        return Decimal(summed).scaleb(-MONEY_PLACES)
    if isinstance(summed, Decimal):
        return summed
    raise TypeError(f"not a money sum: {summed!r}")
