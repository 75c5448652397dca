"""Finance works on usage, reports, exports, statements and the price book; it never sees
prompts or responses. Ops reads the price book and the ledger, and edits no price.

- The Usage & billing page is a proxy of the daily roll-ups (billing.models.UsageReport),
  so the admin lists it; it has no permissions of its own (view_dailyusage opens it).
- Finance: view the ledger, roll-ups, statements with their lines and report files; close
  months (add_statement: a close issues statements); add
  report files (a long report runs in the background); view and add price versions (a
  price is never changed nor deleted: a new version replaces it).
- Finance loses audit.view_auditevent, which tenants/0003 gave it: an audit event holds
  the prompt and the response. What Finance needs from the traffic is in the ledger.
- Ops: view the price book and the ledger. Editing a price (a version, or a provider
  model's price columns: providers/admin.py) needs billing.add_priceversion.

Like billing/0005: re-running brings each group to at least these permissions (and takes
Finance's audit view away again); reversing takes back only these grants and gives the
audit view back.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {
    "Finance": {
        ("billing", "usageline"): ("view",),
        ("billing", "dailyusage"): ("view",),
        ("billing", "statement"): ("add", "view"),  # add: close a month (billing.close_views)
        ("billing", "statementline"): ("view",),
        ("billing", "reportexport"): ("add", "view"),
        ("billing", "priceversion"): ("add", "view"),
    },
    "Ops": {
        ("billing", "priceversion"): ("view",),
        ("billing", "usageline"): ("view",),
    },
}

# Prompts and responses live on the audit event: never Finance's.
REVOKED: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {
    "Finance": {("audit", "auditevent"): ("view",)},
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


def _create_permissions(apps):  # type: ignore[no-untyped-def]
    # On a fresh database permissions are created after `migrate` (post_migrate): create
    # these apps' now, from the migration state (billing 0007's models are new).
    for label in ("billing", "audit"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    _create_permissions(apps)
    Group = apps.get_model("auth", "Group")
    for name, grants in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*_permissions(apps, grants))
    for name, revoked in REVOKED.items():
        for group in Group.objects.filter(name=name):
            group.permissions.remove(*_permissions(apps, revoked))


def revoke(apps, schema_editor):  # type: ignore[no-untyped-def]
    Group = apps.get_model("auth", "Group")
    for name, grants in GRANTS.items():
        for group in Group.objects.filter(name=name):
            group.permissions.remove(*_permissions(apps, grants))
    for name, revoked in REVOKED.items():
        for group in Group.objects.filter(name=name):
            group.permissions.add(*_permissions(apps, revoked))


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenants", "0003_ops_and_finance_groups"),
        ("billing", "0005_commercial_terms_permissions"),
        ("billing", "0007_rollups_statements_and_report_files"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageReport",
            fields=[],
            options={
                "verbose_name": "usage & billing",
                "verbose_name_plural": "usage & billing",
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("billing.dailyusage",),
        ),
        migrations.RunPython(grant, revoke),
    ]
