"""The Ops and Finance groups, with the model permissions the admin and the management API
check (gateway_project/lib/drf_permissions.py).

Ops run the gateway: tenants, keys, providers, routes, budgets, rate limits and redaction
rules, and may read the audit log. They may not delete tenants or keys (suspend and revoke
instead: deleting either would take its audit and budget history with it), nor audit rows.
Finance reads tenants, budgets (and their alerts) and the audit log, and changes nothing.

Re-running brings each group to at least these permissions and never takes one away, so
permissions an operator added by hand, or a later migration's, survive.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

MANAGE = ("add", "change", "delete", "view")
MANAGE_NO_DELETE = ("add", "change", "view")
VIEW = ("view",)

GROUPS: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {
    "Ops": {
        ("tenants", "tenant"): MANAGE_NO_DELETE,
        ("tenants", "apikey"): MANAGE_NO_DELETE,
        ("providers", "provider"): MANAGE,
        ("providers", "providermodel"): MANAGE,
        ("routing", "route"): MANAGE,
        ("routing", "routetarget"): MANAGE,
        ("billing", "budget"): MANAGE,
        ("billing", "ratelimit"): MANAGE,
        ("billing", "budgetalert"): VIEW,
        ("audit", "redactionrule"): MANAGE,
        ("audit", "auditevent"): VIEW,
    },
    "Finance": {
        ("tenants", "tenant"): VIEW,
        ("billing", "budget"): VIEW,
        ("billing", "budgetalert"): VIEW,
        ("audit", "auditevent"): VIEW,
    },
}


def create_groups(apps, schema_editor):  # type: ignore[no-untyped-def]
    # Permissions are normally created after `migrate` (post_migrate): on a fresh database
    # they do not exist yet at this point, so create them now, from the migration state.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, grants in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for (app_label, model), actions in grants.items():
            codenames = [f"{action}_{model}" for action in actions]
            permissions = Permission.objects.filter(
                content_type__app_label=app_label, codename__in=codenames
            )
            if permissions.count() != len(codenames):
                raise RuntimeError(f"missing permissions for {app_label}.{model}: {codenames}")
            group.permissions.add(*permissions)


def delete_groups(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenants", "0002_apikey_max_body_bytes_apikey_max_depth_and_more"),
        ("providers", "0002_provider_circuit_cooldown_s_and_more"),
        ("routing", "0003_route_cache_ttl_seconds_route_hedge_after_ms_and_more"),
        ("billing", "0002_budget_alert_thresholds_budgetalert"),
        ("audit", "0002_auditevent_api_key_auditevent_route_id_and_more"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
