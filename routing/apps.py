from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


def _record_baseline(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """After `migrate`, the configuration as a version if it is not the latest one."""
    from routing.models import ConfigVersion
    from routing.versions.services import config_version_baseline

    if using != DEFAULT_DB_ALIAS:
        return
    if ConfigVersion._meta.db_table not in connections[using].introspection.table_names():
        return  # migrated back past routing 0004
    try:
        config_version_baseline()
    except Exception:
        # Never fail a migrate for the history: the next change records the whole state.
        logger.exception("could not record the configuration as a version after migrate")


class RoutingConfig(AppConfig):
    name = "routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from routing import selectors, signals
        from tenants import route_names

        signals.connect()
        post_migrate.connect(_record_baseline, sender=self, dispatch_uid="config-baseline")
        # Tenants sit below routing: they learn route names through this, not an import.
        route_names.register(
            route_names.RouteCatalog(
                visible_to=selectors.route_names_visible_to, known=selectors.route_names
            )
        )
