"""The price book and the usage ledger: what each request was priced at, and what it cost."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PriceVersion(models.Model):
    """One dated price of a provider model: in force from `effective_from` until the
    next version's. Never updated nor deleted (billing.services only adds versions; the
    admin is add-only), so a past request is priced as it was."""

    # No database constraint and no cascade: deleting a provider model (or its provider)
    # leaves its price history in place, as the ledger lines that name these versions.
    provider_model = models.ForeignKey(
        "providers.ProviderModel",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="price_versions",
    )
    input_per_million = models.DecimalField(
        "input USD per 1M tokens", max_digits=14, decimal_places=6
    )
    output_per_million = models.DecimalField(
        "output USD per 1M tokens", max_digits=14, decimal_places=6
    )
    cached_input_per_million = models.DecimalField(
        "cached input USD per 1M tokens",
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Empty: cached input tokens are priced as input tokens.",
    )
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["provider_model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_model", "effective_from"], name="uniq_price_version_time"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_model_id} from {self.effective_from:%Y-%m-%d %H:%M}"


class UsageLine(models.Model):
    """One billable request (a success, or a request that consumed usage all the same:
    cancelled by the client, a stream broken after it started; billing.ledger.is_billable).

    Written with its audit row, in the same transaction (billing.ledger), at most once per
    request_id; never deleted by audit retention. The tenant, key and route are plain
    ids, not foreign keys: deleting a key must not touch billing history."""

    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(db_index=True)
    tenant_id = models.BigIntegerField(null=True, blank=True)
    tenant_slug = models.CharField(max_length=100, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    key_prefix = models.CharField(max_length=32, blank=True)
    route_id = models.BigIntegerField(null=True, blank=True)
    route = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    price_version_id = models.BigIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    metadata = models.JSONField(default=dict, blank=True)
    stream = models.BooleanField(default=False)
    outcome = models.CharField(max_length=16)
    # The statement that billed this line (billing.models.Statement): set when its month
    # closes, or, for a line that arrived after that, by the next statement as an
    # adjustment. Not copied from the audit row (billing.ledger leaves it out).
    statement_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant_id", "created_at"], name="ledger_tenant_time"),
            models.Index(fields=["api_key_id", "created_at"], name="ledger_key_time"),
            models.Index(fields=["route_id", "created_at"], name="ledger_route_time"),
            models.Index(
                fields=["tenant_id", "created_at"],
                name="ledger_unbilled",
                condition=models.Q(statement_id__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.cost_usd}"
