"""Routes: the names clients send as `model`, each an ordered list of upstream targets."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.models import AuditEvent


class Route(models.Model):
    class Strategy(models.TextChoices):
        FALLBACK = "fallback", "Ordered fallback"
        WEIGHTED = "weighted", "Weighted split"
        ROUND_ROBIN = "round_robin", "Round-robin"
        LATENCY = "latency", "Lowest latency"
        COST = "cost", "Lowest cost"

    name = models.CharField(
        max_length=200, help_text="What clients send as `model` (or in the x-route header)."
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="routes",
        help_text="Leave empty for a route every tenant may use.",
    )
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.FALLBACK)
    description = models.CharField(max_length=500, blank=True)
    default_max_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Output cap sent upstream when a request sets none (bounds budget reservations).",
    )
    cache_ttl_seconds = models.PositiveIntegerField(
        default=0, help_text="Cache identical non-streaming answers this long (0: no cache)."
    )
    semantic_cache = models.BooleanField(
        default=False, help_text="Also answer near-duplicate prompts from the cache."
    )
    semantic_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.950"),
        help_text="Cosine similarity a cached prompt needs to count as a hit.",
    )
    hedge_after_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Start the next target if the first has sent nothing after this long.",
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="uniq_tenant_route_name"),
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(tenant__isnull=True),
                name="uniq_global_route_name",
            ),
        ]

    def __str__(self) -> str:
        # A null foreign key reads as None without a query.
        owner = self.tenant.slug if self.tenant is not None else "global"
        return f"{self.name} ({owner})"


class RouteTarget(models.Model):
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveIntegerField(default=0, help_text="0 is the primary.")
    provider_model = models.ForeignKey(
        "providers.ProviderModel", on_delete=models.PROTECT, related_name="route_targets"
    )
    weight = models.PositiveIntegerField(default=1, help_text="For the weighted strategy.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["route", "position", "id"]

    def __str__(self) -> str:
        return f"{self.route.name}#{self.position} -> {self.provider_model}"


class LiveTraffic(AuditEvent):
    """Not a table of its own: the live traffic page's permission (Django permissions hang
    on a model). A proxy of the audit log, since what the page shows is audit rows in
    motion, but it grants none of the audit log's: the stream never carries their text."""

    class Meta:
        proxy = True
        default_permissions = ()
        permissions = [("view_live_traffic", "Can watch live traffic")]
        verbose_name = "live traffic"
        verbose_name_plural = "live traffic"


class ConfigVersion(models.Model):
    """The whole routing-relevant configuration as it stood after one committed change.

    Recorded by routing/versions/ once per transaction that changed a configuration row;
    `content` is the data `export_gateway_config` writes as YAML (no secret, no key hash),
    and what a rollback imports again.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The staff user who made the change, if a person did.",
    )
    actor = models.CharField(
        max_length=200, help_text="Who, as recorded then: a user and how, a command, a task."
    )
    summary = models.CharField(max_length=500)
    changes = models.JSONField(default=list, help_text="One line per row saved or deleted.")
    # The exported data as JSON text, in the document's order; its YAML document is
    # rendered from it when shown (routing.versions.selectors.config_version_document).
    # Kept as data rather than YAML: recording skips the YAML writer, the slower half of
    # an export, comparing and rolling back read it in a millisecond where YAML takes a
    # second, and two versions always render alike, whatever the writer's style then.
    content = models.TextField(help_text="The configuration's data as JSON.")
    digest = models.CharField(max_length=64, help_text="SHA-256 of the content.")
    routing_version = models.CharField(
        max_length=16,
        db_index=True,
        help_text="The hash audit rows carry as config_version (routing/snapshot.py).",
    )
    rollback_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        verbose_name = "configuration version"
        permissions = [("rollback_configversion", "Can roll the configuration back to a version")]

    def __str__(self) -> str:
        return f"version {self.pk}"
