"""Commercial terms belong to Finance: it sets markups, price overrides, currencies, time
zones and fixes exchange rates. Ops may read them.

An exchange rate is fixed once (billing.terms_services.exchange_rate_fix refuses a change, and the
admin shows a saved rate read-only), so Finance may add and view rates, not change or
delete them.

Finance also reads provider models (their list prices), which it needs to set an override.

Like tenants/migrations/0003_ops_and_finance_groups.py: re-running brings each group to at
least these permissions; reversing takes back only these.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {
    "Finance": {
        ("billing", "tenantterms"): ("add", "change", "delete", "view"),
        ("billing", "priceoverride"): ("add", "change", "delete", "view"),
        ("billing", "exchangerate"): ("add", "view"),
        # An override is set against the list price: Finance reads the models and prices.
        ("providers", "providermodel"): ("view",),
    },
    "Ops": {
        ("billing", "tenantterms"): ("view",),
        ("billing", "priceoverride"): ("view",),
        ("billing", "exchangerate"): ("view",),
    },
}


def _permissions(apps, grants):  # type: ignore[no-untyped-def]
    Permission = apps.get_model("auth", "Permission")
    found = []
    for (app_label, model), actions in grants.items():
        codenames = [f"{action}_{model}" for action in actions]
        permissions = list(
            Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        )
        if len(permissions) != len(codenames):
            raise RuntimeError(f"missing permissions for {app_label}.{model}: {codenames}")
        found += permissions
    return found


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    # On a fresh database permissions are created after `migrate` (post_migrate): create
    # this app's now, from the migration state.
    app_config = apps.get_app_config("billing")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    for name, grants in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*_permissions(apps, grants))


def revoke(apps, schema_editor):  # type: ignore[no-untyped-def]
    Group = apps.get_model("auth", "Group")
    for name, grants in GRANTS.items():
        # Only this app's: another migration may grant view_providermodel too.
        grants = {key: actions for key, actions in grants.items() if key[0] == "billing"}
        for group in Group.objects.filter(name=name):
            group.permissions.remove(*_permissions(apps, grants))


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenants", "0003_ops_and_finance_groups"),
        ("billing", "0004_commercial_terms"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
