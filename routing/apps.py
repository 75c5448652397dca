from __future__ import annotations

from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from routing import selectors, signals
        from tenants import route_names

        signals.connect()
        # Tenants sit below routing: they learn route names through this, not an import.
        route_names.register(
            route_names.RouteCatalog(
                visible_to=selectors.route_names_visible_to, known=selectors.route_names
            )
        )
