"""Default redaction rules, so that a fresh install never stores PII in clear.

Ordinary RedactionRule rows: the admin edits, disables or deletes them like any other,
and a data migration runs once, so a rule deleted later is never recreated. They mask
the audit copy only; masking what is sent upstream changes what the model sees, so it
stays opt-in (scope "audit_and_upstream" on a rule).

Order matters: an IBAN holds groups of four digits that can pass for a card number, and
a card number could be read as a phone number, so the stricter detectors run first.

On an install that already has rules, a detector some existing rule uses (enabled or
not: a disabled one is a choice) is not added again, a name in use is not taken, and the
defaults go after the existing rules. Undoing the migration deletes only the defaults
nobody has changed.
"""

from __future__ import annotations

from django.db import migrations
from django.db.models import Max

DEFAULT_RULES = (
    # (name, detector, replacement)
    ("E-mail addresses", "email", "[EMAIL]"),
    # sk-..., sk-ant-..., AKIA..., GitHub, Slack, Google, Stripe, and this gateway's own
    # gwk_ keys (audit.detectors). Not named after the gwk_ mark: an exported config file
    # must not look like it carries a key.
    ("API keys and tokens", "api_key", "[API_KEY]"),
    ("IBANs", "iban", "[IBAN]"),
    ("Payment card numbers", "credit_card", "[CARD]"),
    ("Phone numbers", "phone", "[PHONE]"),
)
SCOPE = "audit"


def create_default_rules(apps, schema_editor):
    RedactionRule = apps.get_model("audit", "RedactionRule")
    rules = RedactionRule.objects.using(schema_editor.connection.alias)
    used_detectors = set(rules.values_list("detector", flat=True))
    used_names = set(rules.values_list("name", flat=True))
    last = rules.aggregate(last=Max("position"))["last"]
    position = 0 if last is None else last + 1
    for name, detector, replacement in DEFAULT_RULES:
        if detector in used_detectors or name in used_names:
            continue
        rules.create(
            name=name,
            detector=detector,
            pattern="",
            replacement=replacement,
            scope=SCOPE,
            enabled=True,
            position=position,
        )
        position += 1


def delete_untouched_default_rules(apps, schema_editor):
    RedactionRule = apps.get_model("audit", "RedactionRule")
    rules = RedactionRule.objects.using(schema_editor.connection.alias)
    for name, detector, replacement in DEFAULT_RULES:
        rules.filter(
            name=name,
            detector=detector,
            pattern="",
            replacement=replacement,
            scope=SCOPE,
            enabled=True,
        ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_auditevent_api_key_auditevent_route_id_and_more"),
    ]

    operations = [
        migrations.RunPython(create_default_rules, delete_untouched_default_rules),
    ]
