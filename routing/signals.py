"""Invalidate every process's config snapshot when the configuration changes."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from gateway_project.lib import generation

logger = logging.getLogger(__name__)


def _config_changed(**kwargs: object) -> None:
    from routing.snapshot import snapshots

    def bump() -> None:
        snapshots.invalidate()
        try:
            generation.bump()
        except Exception:
            # The write is committed: generation.bump keeps retrying in the background,
            # and every process rebuilds its snapshot within GATEWAY_SNAPSHOT_MAX_AGE_SECONDS
            # anyway, so the change is in force everywhere within that bound.
            logger.exception("could not announce a configuration change; retrying")

    transaction.on_commit(bump)


def connect() -> None:
    from audit.models import RedactionRule
    from billing.models import Budget, PriceVersion, RateLimit
    from providers.models import Provider, ProviderModel
    from routing.models import Route, RouteTarget
    from tenants.models import ApiKey, Tenant

    for model in (
        Tenant,
        ApiKey,
        Provider,
        ProviderModel,
        Route,
        RouteTarget,
        RedactionRule,
        Budget,
        RateLimit,
        PriceVersion,
    ):
        post_save.connect(_config_changed, sender=model, dispatch_uid=f"cfg-save-{model.__name__}")
        post_delete.connect(
            _config_changed, sender=model, dispatch_uid=f"cfg-delete-{model.__name__}"
        )
