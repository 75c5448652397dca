"""The live traffic page's permission (routing.view_live_traffic), given to Ops.

Ops run the gateway: the page is how they watch it (errors, latency, fallbacks as they
happen). Finance does not get it: what Finance needs of the same requests is in the
ledger and the reports, settled and complete, and the page is an operations tool. The
stream carries no prompt, response or key, so an operator may still grant it to anyone.

Like billing 0008: re-running brings Ops to at least this permission; reversing takes it
back.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Ops"
CODENAME = "view_live_traffic"


def _permission(apps):  # type: ignore[no-untyped-def]
    # On a fresh database permissions are created after `migrate` (post_migrate): create
    # this app's now, from the migration state (the proxy model is new).
    app_config = apps.get_app_config("routing")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.get(content_type__app_label="routing", codename=CODENAME)


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    group, _ = apps.get_model("auth", "Group").objects.get_or_create(name=GROUP)
    group.permissions.add(_permission(apps))


def revoke(apps, schema_editor):  # type: ignore[no-untyped-def]
    for group in apps.get_model("auth", "Group").objects.filter(name=GROUP):
        group.permissions.remove(_permission(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("audit", "0004_cached_and_reasoning_tokens"),
        ("tenants", "0003_ops_and_finance_groups"),
        ("routing", "0005_config_version_permissions"),
    ]

    operations = [
        migrations.CreateModel(
            name="LiveTraffic",
            fields=[],
            options={
                "verbose_name": "live traffic",
                "verbose_name_plural": "live traffic",
                "permissions": [("view_live_traffic", "Can watch live traffic")],
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("audit.auditevent",),
        ),
        migrations.RunPython(grant, revoke),
    ]
