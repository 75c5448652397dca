"""Typed readers for the configuration document: each checks one value and records
what is wrong with it under its path, so a single pass reports every problem.

Money is Decimal end to end. A YAML float (`input_per_million: 0.15`, unquoted) is
refused rather than converted: the float has already lost the exact value by the time
we see it, and a price silently off by a rounding step is worse than an error asking
for quotes. Timeouts and the semantic-cache similarity are not money, so floats are
accepted there (they are read through their shortest text, `0.95` as "0.95").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import TextChoices

from audit.detectors import contains_api_key
from billing.models import Budget, default_thresholds
from billing.services import BudgetSpec, RateLimitSpec, budget_thresholds_validate
from routing.config_io.schema import Issue, Limits
from routing.services import route_semantic_threshold_validate

MONEY_PLACES = 6  # decimal_places of every price and budget column
SECONDS_PLACES = 3  # decimal_places of the provider timeout columns
SECRET_NAME = re.compile(r"(?i)(secret|token|passw|credential|authorization|api_?key(?!_env))")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


class Reader:
    """Collects issues and warnings while the section parsers read the document."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.warnings: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.issues.append(Issue(path or "(top level)", message))

    # --- shapes ---------------------------------------------------------------------------
    def mapping(
        self, value: Any, path: str, fields: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key in fields:
                continue
            if isinstance(key, str) and SECRET_NAME.search(key):
                self.fail(
                    join(path, str(key)),
                    "looks like a secret; secrets never belong in this file (give a "
                    "provider the NAME of an environment variable in api_key_env)",
                )
            else:
                self.fail(join(path, str(key)), f"unknown field; expected {', '.join(fields)}")
        for key in required:
            if value.get(key) in (None, ""):
                self.fail(join(path, key), "is required")
        return value

    def items(self, value: Any, path: str) -> Iterator[tuple[str, Any]]:
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_kind(value)}")
            return
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item

    # --- scalars --------------------------------------------------------------------------
    def text(
        self,
        m: dict[str, Any],
        key: str,
        path: str,
        *,
        default: str = "",
        choices: type[TextChoices] | None = None,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> str:
        value = m.get(key)
        where = join(path, key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(where, f"expected a string, got {_kind(value)} (quote it)")
            return default
        if choices is not None and value not in choices.values:
            self.fail(where, f"{value!r} is not one of {', '.join(choices.values)}")
        if pattern is not None and value and not pattern.match(value):
            self.fail(where, f"{value!r} is not valid{hint}")
        return value

    def integer(
        self,
        m: dict[str, Any],
        key: str,
        path: str,
        *,
        default: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = m.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(join(path, key), f"expected a whole number >= 0, got {value!r}")
            return default
        if maximum is not None and value > maximum:
            self.fail(
                join(path, key), f"expected a whole number from 0 to {maximum}, got {value!r}"
            )
            return default
        return value

    def positive(
        self, m: dict[str, Any], key: str, path: str, *, maximum: int = 2**31 - 1
    ) -> int | None:
        """An optional limit: a whole number from 1 (0 would refuse everything) to the
        column's maximum; absent or null means no limit."""
        value = m.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            self.fail(
                join(path, key), f"expected a whole number from 1 to {maximum}, got {value!r}"
            )
            return None
        return value

    def names(self, m: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
        """A list of non-empty strings; repeats are dropped, the order kept."""
        value = m.get(key)
        if value is None:
            return ()
        where = join(path, key)
        if not isinstance(value, list):
            self.fail(where, f"expected a list of names, got {_kind(value)}")
            return ()
        names = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{where}[{index}]", f"expected a name, got {item!r}")
            else:
                names.append(item.strip())
        return tuple(dict.fromkeys(names))

    def count(
        self, m: dict[str, Any], key: str, path: str, *, default: int, maximum: int | None = None
    ) -> int:
        value = self.integer(m, key, path, maximum=maximum)
        return default if value is None else value

    def boolean(self, m: dict[str, Any], key: str, path: str, *, default: bool) -> bool:
        value = m.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(join(path, key), f"expected true or false, got {value!r}")
            return default
        return value

    def money(self, m: dict[str, Any], key: str, path: str) -> Decimal | None:
        value = m.get(key)
        where = join(path, key)
        if value is None:
            return None
        if isinstance(value, float):
            self.fail(where, f'write amounts as quoted decimal strings ("{value}"), not floats')
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(where, f"expected a decimal string, got {_kind(value)}")
            return None
        try:
            amount = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            self.fail(where, f"{value!r} is not a decimal number")
            return None
        if not amount.is_finite() or amount < 0:
            self.fail(where, f"{value!r} must be a number >= 0")
            return None
        if -int(amount.as_tuple().exponent) > MONEY_PLACES:
            self.fail(where, f"{value!r} has more than {MONEY_PLACES} decimal places")
            return None
        return amount

    def seconds(self, m: dict[str, Any], key: str, path: str, *, default: Decimal) -> Decimal:
        value = self.optional_seconds(m, key, path)
        return default if value is None else value

    def optional_seconds(self, m: dict[str, Any], key: str, path: str) -> Decimal | None:
        """A number of seconds above 0, to the millisecond; absent or null gives None."""
        value = m.get(key)
        if value is None:
            return None
        seconds = self._number(value)
        if seconds is None or seconds <= 0:
            self.fail(join(path, key), f"expected a number of seconds > 0, got {value!r}")
            return None
        # Trailing zeros are no precision: "1.5000" is 1.5 and "60.0000" is 60, which the
        # column can hold.
        if seconds == seconds.to_integral_value():
            seconds = seconds.to_integral_value()
        else:
            seconds = seconds.normalize()
        if -int(seconds.as_tuple().exponent) > SECONDS_PLACES:
            self.fail(join(path, key), f"{value!r} has more than {SECONDS_PLACES} decimal places")
            return None
        return seconds

    def similarity(self, m: dict[str, Any], key: str, path: str, *, default: Decimal) -> Decimal:
        """The semantic cache's threshold: above 0, at most 1, at most three places."""
        value = m.get(key)
        if value is None:
            return default
        number = self._number(value)
        if number is None:
            self.fail(join(path, key), f'expected a decimal string like "0.95", got {value!r}')
            return default
        try:
            return route_semantic_threshold_validate(value=number)
        except ValidationError as exc:
            self.fail(join(path, key), exc.messages[0])
            return default

    @staticmethod
    def _number(value: Any) -> Decimal | None:
        """A finite Decimal from a YAML number or numeric string, else None."""
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None

    # --- limits ---------------------------------------------------------------------------
    def limits(self, m: dict[str, Any], path: str, *, per_model: bool) -> Limits:
        rate_limits = budgets = None
        if "rate_limits" in m:
            rate_limits = self.rate_limits(m["rate_limits"], join(path, "rate_limits"), per_model)
        if "budgets" in m:
            entries = self.items(m["budgets"], join(path, "budgets"))
            budgets = tuple(self.budget(item, where) for where, item in entries)
        return Limits(rate_limits=rate_limits, budgets=budgets)

    def rate_limits(self, value: Any, path: str, per_model: bool) -> tuple[RateLimitSpec, ...]:
        # One subject-wide limit is written as a mapping, several as a list of them.
        entries = [(path, value)] if isinstance(value, dict) else list(self.items(value, path))
        fields = ("rpm", "tpm", "enabled") + (("model",) if per_model else ())
        specs = []
        for where, item in entries:
            m = self.mapping(item, where, fields)
            spec = RateLimitSpec(
                rpm=self.integer(m, "rpm", where),
                tpm=self.integer(m, "tpm", where),
                model_name=self.text(m, "model", where),
                enabled=self.boolean(m, "enabled", where, default=True),
            )
            if m and spec.rpm is None and spec.tpm is None:
                self.fail(where, "set rpm, tpm or both")
            specs.append(spec)
        return tuple(specs)

    def budget(self, value: Any, path: str) -> BudgetSpec:
        fields = ("period", "max_tokens", "max_cost_usd", "hard", "enabled", "alert_thresholds")
        m = self.mapping(value, path, fields)
        spec = BudgetSpec(
            period=self.text(
                m, "period", path, default=Budget.Period.MONTHLY, choices=Budget.Period
            ),
            max_tokens=self.integer(m, "max_tokens", path),
            max_cost_usd=self.money(m, "max_cost_usd", path),
            hard=self.boolean(m, "hard", path, default=True),
            enabled=self.boolean(m, "enabled", path, default=True),
            alert_thresholds=self.thresholds(m, "alert_thresholds", path),
        )
        if m and spec.max_tokens is None and spec.max_cost_usd is None:
            self.fail(path, "set max_tokens, max_cost_usd or both")
        return spec

    def thresholds(self, m: dict[str, Any], key: str, path: str) -> tuple[int, ...]:
        """A budget's alert percentages; absent means the default, [] means no alerts."""
        value = m.get(key)
        if value is None:
            return tuple(default_thresholds())
        if not isinstance(value, list):
            self.fail(join(path, key), f"expected a list of percentages, got {_kind(value)}")
            return tuple(default_thresholds())
        try:
            return tuple(budget_thresholds_validate(thresholds=value))
        except ValidationError as exc:
            self.fail(join(path, key), exc.messages[0])
            return tuple(default_thresholds())

    # --- secrets --------------------------------------------------------------------------
    def scan_secrets(self, value: Any, path: str) -> None:
        if isinstance(value, str):
            if contains_api_key(value):
                self.fail(path, "contains what looks like an API key; secrets never belong here")
        elif isinstance(value, dict):
            for key, item in value.items():
                self.scan_secrets(item, join(path, str(key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.scan_secrets(item, f"{path}[{index}]")

    def duplicates(self, keyed: list[tuple[Any, str]], what: str) -> None:
        seen: dict[Any, str] = {}
        for key, path in keyed:
            if key in seen:
                self.fail(path, f"duplicate {what} (first defined at {seen[key]})")
            else:
                seen.setdefault(key, path)
