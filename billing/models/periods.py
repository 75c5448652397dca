"""What finance works with once the ledger has the lines: daily roll-ups, closed periods
with their numbered statements, and report files built in the background."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class DailyUsage(models.Model):
    """One billing day's usage of one tenant, per key x route x provider model x price
    version x tag set: what reports read (billing.rollups builds it from the ledger).

    `day` is a calendar day in the tenant's billing time zone. A roll-up of a day is
    rebuilt whole from the ledger (delete, then insert, in one transaction), so re-running
    it gives identical rows. A closed month's days are never rebuilt; ledger lines that
    arrive for a closed month (`late`) are rolled into the first day of the tenant's first
    open month, the period whose statement bills them as an adjustment.

    Ids are plain integers, 0 for none (a key or route deleted since keeps its usage);
    the slug, prefix and names are copied so a report needs no join."""

    tenant_id = models.BigIntegerField()
    day = models.DateField()
    late = models.BooleanField(
        default=False, help_text="Usage of a closed month, billed in this day's month."
    )
    tenant_slug = models.CharField(max_length=100, blank=True)
    api_key_id = models.BigIntegerField(default=0)
    key_prefix = models.CharField(max_length=32, blank=True)
    route_id = models.BigIntegerField(default=0)
    route = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    price_version_id = models.BigIntegerField(default=0)
    # The request's tags (x-gateway.metadata), as canonical JSON (sorted keys, no spaces):
    # "" for none. One value per request, so grouping by it never counts a request twice.
    tags = models.CharField(max_length=4000, blank=True)
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    built_at = models.DateTimeField()

    class Meta:
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        ordering = ["-day", "tenant_slug"]
        indexes = [
            models.Index(fields=["tenant_id", "day"], name="rollup_tenant_day"),
            models.Index(fields=["day"], name="rollup_day"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_slug} {self.day} {self.model}"


class RollupCursor(models.Model):
    """How far the incremental roll-up has read the ledger (billing/rollup_cursor.py): row
    "ledger" is the UsageLine id below which every line's day has been rebuilt; row
    "ledger-seen" the highest id the last run saw, where "ledger" moves once lines below
    it can no longer commit (lines commit out of id order)."""

    name = models.CharField(max_length=32, unique=True)
    last_line_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at line {self.last_line_id}"


class Statement(models.Model):
    """A closed billing month of one tenant: immutable once written, numbered without gaps.

    The terms in force at the close (markup, currency, exchange rate, time zone) are
    copied, so editing a tenant's terms later changes no issued statement. The ledger
    lines it bills carry its id (UsageLine.statement_id); lines of a closed month that
    arrive later are billed by the tenant's next statement, as adjustment lines."""

    number = models.CharField(max_length=20, unique=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    tenant_slug = models.CharField(max_length=100)
    month = models.CharField(max_length=7, help_text="YYYY-MM, in the tenant's time zone")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    time_zone = models.CharField(max_length=64)
    currency = models.CharField(max_length=3)
    exchange_rate = models.DecimalField(max_digits=18, decimal_places=8)
    markup_percent = models.DecimalField(max_digits=6, decimal_places=2)
    subtotal_usd = models.DecimalField(max_digits=24, decimal_places=10)
    adjustments_usd = models.DecimalField(max_digits=24, decimal_places=10)
    markup_usd = models.DecimalField(max_digits=24, decimal_places=10)
    total_usd = models.DecimalField(max_digits=24, decimal_places=10)
    total = models.DecimalField(
        max_digits=24, decimal_places=4, help_text="In `currency`, rounded to its minor unit."
    )
    closed_at = models.DateTimeField()
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-month", "tenant_slug"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month"], name="uniq_statement_month")
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.tenant_slug} {self.month}"


class StatementLine(models.Model):
    """One line of a statement: a token kind of one model at one price, or the same for
    usage of an earlier, closed month that arrived after its close (`adjustment_of`)."""

    class TokenKind(models.TextChoices):
        INPUT = "input", "input tokens"
        CACHED_INPUT = "cached_input", "cached input tokens"
        OUTPUT = "output", "output tokens"

    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveIntegerField()
    adjustment_of = models.CharField(
        max_length=7, blank=True, help_text="YYYY-MM of the closed month this usage belongs to"
    )
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=200)
    price_version_id = models.BigIntegerField(default=0)
    token_kind = models.CharField(max_length=16, choices=TokenKind.choices)
    quantity = models.BigIntegerField()
    unit_price = models.DecimalField(
        max_digits=14, decimal_places=6, help_text="USD per 1M tokens, as charged"
    )
    amount_usd = models.DecimalField(max_digits=24, decimal_places=10)

    class Meta:
        ordering = ["statement", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "position"], name="uniq_statement_line_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.statement_id} #{self.position} {self.model} {self.token_kind}"


class ReportExport(models.Model):
    """A report file built in the background (billing.tasks.billing_report_build), kept for
    download by whoever asked for it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    parameters = models.JSONField(default=dict)
    format = models.CharField(max_length=8)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0, help_text="percent")
    file_name = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.format} report {self.id} ({self.status})"
