"""Reads for redaction rules and the audit log."""

from __future__ import annotations

from django.db.models import QuerySet

from audit.models import RedactionRule


def redaction_rule_list() -> QuerySet[RedactionRule]:
    """Every rule, disabled ones included, in the order they apply."""
    return RedactionRule.objects.order_by("position", "id")
