"""Ops read configuration versions and roll back to one; Finance sees none of them.

A version is the whole configuration: tenants' policies, redaction patterns, the prefixes
and names of keys that carry settings. Finance works on prices, usage and statements, and
its price history is the price book's versions (billing 0008), so it gets nothing here.

Like billing 0008: re-running brings Ops to at least these permissions; reversing takes
back only these.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

CODENAMES = ("view_configversion", "rollback_configversion")


def _permissions(apps):  # type: ignore[no-untyped-def]
    # On a fresh database permissions are created after `migrate` (post_migrate): create
    # routing's now, from the migration state (ConfigVersion is new in 0004).
    app_config = apps.get_app_config("routing")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    found = list(
        Permission.objects.filter(content_type__app_label="routing", codename__in=CODENAMES)
    )
    if len(found) != len(CODENAMES):
        raise RuntimeError(f"missing permissions for routing.configversion: {CODENAMES}")
    return found


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    group, _ = apps.get_model("auth", "Group").objects.get_or_create(name="Ops")
    group.permissions.add(*_permissions(apps))


def revoke(apps, schema_editor):  # type: ignore[no-untyped-def]
    for group in apps.get_model("auth", "Group").objects.filter(name="Ops"):
        group.permissions.remove(*_permissions(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0004_config_version"),
        ("tenants", "0003_ops_and_finance_groups"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
