"""Upstream providers and the models they serve, with their prices."""

from __future__ import annotations

from django.db import models


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        AZURE_OPENAI = "azure_openai", "Azure OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
        STUB = "stub", "Stub (offline)"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    base_url = models.URLField(max_length=500, blank=True)
    api_key_env = models.CharField(
        max_length=200,
        blank=True,
        help_text="Name of the environment variable holding the secret (never the secret).",
    )
    api_version = models.CharField(max_length=50, blank=True, help_text="Azure api-version.")
    connect_timeout_s = models.DecimalField(max_digits=8, decimal_places=3, default=5)
    timeout_s = models.DecimalField(max_digits=8, decimal_places=3, default=60)
    first_byte_timeout_s = models.DecimalField(
        max_digits=8,
        decimal_places=3,
        null=True,
        blank=True,
        help_text="Longest wait for the first byte of an answer (empty: the total timeout).",
    )
    stream_idle_timeout_s = models.DecimalField(
        max_digits=8,
        decimal_places=3,
        null=True,
        blank=True,
        help_text="Longest silence between two streamed chunks (empty: the total timeout).",
    )
    max_retries = models.PositiveSmallIntegerField(
        default=1, help_text="Retries on this provider (with backoff) before the next target."
    )
    circuit_failure_threshold = models.PositiveSmallIntegerField(
        default=5, help_text="Consecutive failures that open the circuit."
    )
    circuit_cooldown_s = models.PositiveIntegerField(
        default=30, help_text="How long an open circuit waits before a half-open probe."
    )
    stub_delay_ms = models.PositiveIntegerField(
        default=0, help_text="Stub only: delay before answering (and between chunks)."
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProviderModel(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(
        max_length=200, help_text="Upstream model name (the deployment name on Azure)."
    )
    input_per_million = models.DecimalField(
        "input USD per 1M tokens", max_digits=14, decimal_places=6, default=0
    )
    output_per_million = models.DecimalField(
        "output USD per 1M tokens", max_digits=14, decimal_places=6, default=0
    )
    context_window = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["provider__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "name"], name="uniq_provider_model")
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.name}"
