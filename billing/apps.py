from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit.store import register_companion
        from billing import price_book
        from billing.ledger import ledger_write

        # providers and audit sit below billing and cannot call it: billing listens to
        # ProviderModel's saves, and writes its ledger with each batch of audit rows.
        price_book.connect()
        register_companion(ledger_write)
