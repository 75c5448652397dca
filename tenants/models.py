"""Tenants and the API keys that identify them; the tokens staff scripts use on the
management API."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from knox.models import AbstractAuthToken


class UsagePolicy(models.Model):
    """Request limits a tenant sets for all its keys, and a key may tighten further.

    Empty means no limit at this level; where both set one, the smaller applies.
    """

    max_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Largest max_tokens / max_completion_tokens accepted."
    )
    max_n = models.PositiveSmallIntegerField("maximum n", null=True, blank=True)
    max_body_bytes = models.PositiveIntegerField(null=True, blank=True)
    max_messages = models.PositiveIntegerField(null=True, blank=True)
    max_depth = models.PositiveSmallIntegerField(
        "maximum JSON nesting depth", null=True, blank=True
    )

    POLICY_FIELDS = (
        "max_prompt_tokens",
        "max_output_tokens",
        "max_n",
        "max_body_bytes",
        "max_messages",
        "max_depth",
    )

    class Meta:
        abstract = True


class Tenant(UsagePolicy):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    metadata = models.JSONField(default=dict, blank=True)
    allowed_routes = models.JSONField(
        default=list,
        blank=True,
        help_text="Route names this tenant's keys may call; empty means every visible route.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ApiKey(UsagePolicy):
    """A tenant's key. Only a public prefix and a hash of the whole key are stored."""

    class Status(models.TextChoices):
        # Derived from revoked_at and expires_at, never stored.
        ACTIVE = "active", "Active"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=128, editable=False)
    allowed_routes = models.JSONField(
        default=list,
        blank=True,
        help_text="Route names this key may call; empty means every route its tenant can see.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def status(self) -> ApiKey.Status:
        """Revoked wins over expired: revoking is what an operator did on purpose.

        `tenants.selectors.api_key_status_q` is the same rule as a query filter.
        """
        if self.revoked_at is not None:
            return self.Status.REVOKED
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return self.Status.EXPIRED
        return self.Status.ACTIVE

    @property
    def is_usable(self) -> bool:
        return self.status == self.Status.ACTIVE


class ManagementToken(AbstractAuthToken):
    """A token for scripts calling the management API (`/api/v1/`) as a staff user.

    django-rest-knox's model (tenants.rest_auth authenticates with it): the token is shown
    once and only its SHA-512 `digest` is stored, with `token_key`, its first 15 characters
    (`gwm_` and 11 random ones), to find the row and to tell tokens apart. Revoking deletes
    the row; knox deletes an expired one when it is next presented.
    """

    name = models.CharField(max_length=200, blank=True, help_text="What the token is for.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]
        verbose_name = "management API token"

    def __str__(self) -> str:
        return f"{self.token_key}… ({self.user})"
