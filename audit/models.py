"""Redaction rules and the audit log (one row per request, rejected ones included)."""

from __future__ import annotations

from django.db import models


class RedactionRule(models.Model):
    class Detector(models.TextChoices):
        EMAIL = "email", "E-mail address"
        PHONE = "phone", "Phone number"
        CREDIT_CARD = "credit_card", "Credit card number (Luhn-checked)"
        IBAN = "iban", "IBAN (checksum-verified)"
        IPV4 = "ipv4", "IPv4 address"
        API_KEY = "api_key", "Provider-style API key"
        REGEX = "regex", "Custom regular expression"

    class Scope(models.TextChoices):
        AUDIT = "audit", "Audit copy only"
        AUDIT_AND_UPSTREAM = "audit_and_upstream", "Audit copy and the prompt sent upstream"

    name = models.CharField(max_length=100, unique=True)
    detector = models.CharField(max_length=16, choices=Detector.choices)
    pattern = models.CharField(max_length=1000, blank=True, help_text="For the regex detector.")
    replacement = models.CharField(max_length=100, default="[REDACTED]")
    scope = models.CharField(max_length=24, choices=Scope.choices, default=Scope.AUDIT)
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0, help_text="Rules apply in this order.")

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from audit.redaction import compile_pattern

        if self.detector == self.Detector.REGEX:
            if not self.pattern:
                raise ValidationError({"pattern": "A regex rule needs a pattern."})
            try:
                compile_pattern(self.pattern)
            except ValueError as exc:
                raise ValidationError({"pattern": str(exc)}) from exc


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        REJECTED = "rejected", "Rejected by the gateway"
        UPSTREAM_ERROR = "upstream_error", "Upstream failed"
        CANCELLED = "cancelled", "Client disconnected"
        ERROR = "error", "Gateway error"

    request_id = models.CharField(max_length=64, db_index=True)
    # Indexed by `audit_time` below, which also carries what the dashboard reads.
    created_at = models.DateTimeField()
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tenant_slug = models.CharField(max_length=100, blank=True)
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    key_prefix = models.CharField(max_length=32, blank=True)
    # The route's id (no FK: a deleted route must not rewrite history) for budget ledgers.
    route_id = models.BigIntegerField(null=True, blank=True)
    route = models.CharField(max_length=200, blank=True)
    requested_model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    fallback_used = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    stream = models.BooleanField(default=False)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    # As the upstream reported them: cached input tokens are part of prompt_tokens,
    # reasoning tokens part of completion_tokens.
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    # The price book's version that priced the request (billing.models.PriceVersion; no
    # FK: audit sits below billing).
    price_version_id = models.BigIntegerField(null=True, blank=True)
    prompt = models.JSONField(default=list, blank=True, help_text="Messages, after redaction.")
    response = models.TextField(blank=True, help_text="After redaction.")
    attempt_log = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    config_version = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="audit_tenant_time"),
            models.Index(fields=["api_key", "created_at"], name="audit_key_time"),
            models.Index(fields=["route_id", "created_at"], name="audit_route_time"),
            # Time ranges, and the columns the admin dashboard counts over the last day
            # (audit/traffic.py), read from the index alone on Postgres (INCLUDE: an
            # index-only scan, without visiting the rows). SQLite ignores the INCLUDE
            # (settings silence its warning, models.W040). Migration 0005.
            models.Index(
                fields=["created_at"],
                include=["status_code", "outcome", "latency_ms", "tenant"],
                name="audit_time",
            ),
            # The admin's search by status, alone or with the tenant (migration 0005).
            models.Index(
                fields=["tenant", "status_code", "created_at"], name="audit_tenant_status_time"
            ),
            models.Index(fields=["status_code", "created_at"], name="audit_status_time"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.outcome} {self.status_code}"
