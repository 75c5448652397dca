"""What a redaction rule does to a sample text, before it is saved: the admin's "try it".

The rule is the one typed in the form (an unsaved RedactionRule), checked by the model's
own clean() and compiled by audit.redaction, the code the gateway runs, so what the
operator sees is what the audit copy (and, for an "audit and upstream" rule, the body
sent upstream) would get. Nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from audit.models import RedactionRule
from audit.redaction import compile_rules
from audit.row import RuleSpec
from audit.selectors import redaction_rule_list


class PreviewError(ValueError):
    """The rule (or a saved one, for the whole set) cannot be compiled; `messages` say why."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class RulePreview:
    audit: str  # the sample as the audit log would keep it
    upstream: str  # the sample as it would be sent upstream
    rules: list[str]  # the names of the rules applied, in order


def _check(rule: RedactionRule) -> None:
    try:
        rule.clean()
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            raise PreviewError(
                [
                    f"{name}: {message}"
                    for name, errors in exc.message_dict.items()
                    for message in errors
                ]
            ) from exc
        raise PreviewError(list(exc.messages)) from exc
    if rule.detector not in RedactionRule.Detector.values:
        raise PreviewError([f"detector: unknown detector {rule.detector!r}."])


def _with_rule_set(rule: RedactionRule) -> list[RedactionRule]:
    """The saved rules in the order they apply, with `rule` as typed in place of its saved
    self (or, new, after the saved rules of its position)."""
    saved = [r for r in redaction_rule_list() if rule.pk is None or r.pk != rule.pk]
    unsaved_last = float("inf")
    order = sorted(
        [*saved, rule],
        key=lambda r: (r.position, r.pk if r.pk is not None else unsaved_last),
    )
    return order


def rule_preview(*, rule: RedactionRule, sample: str, whole_set: bool = False) -> RulePreview:
    """`sample` redacted by `rule` alone (enabled or not: it is being tried), or with
    `whole_set` by every enabled rule, `rule` as typed among them.

    Raises PreviewError with messages fit for the form when a rule cannot be compiled.
    """
    _check(rule)
    try:
        if whole_set:
            compiled = compile_rules(_with_rule_set(rule))
        else:
            compiled = compile_rules([RuleSpec.of(rule)])
    except ValueError as exc:  # a saved rule that no longer compiles (edited behind our back)
        raise PreviewError([str(exc)]) from exc
    return RulePreview(
        audit=compiled.redact_for_audit(sample),
        upstream=compiled.redact_for_upstream(sample),
        rules=list(compiled.names),
    )
