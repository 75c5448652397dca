"""The redaction rules' admin: saved through audit.services, tried before saving.

The change form (and the add form) has a "try it" box: the rule as typed, not yet saved,
is posted with a sample text to `try_view`, which runs it through the gateway's own
redaction code (audit/rule_preview.py) alone or within the whole rule set and answers
JSON for the form's small script (templates/admin/audit/redactionrule/change_form.html).
A saved rule also has a page of its own to test it without a script (`test_view`).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from audit.models import RedactionRule
from audit.rule_preview import PreviewError, rule_preview
from audit.services import (
    redaction_rule_create,
    redaction_rule_delete,
    redaction_rule_update,
)
from gateway_project.lib.admin_writes import adopt, stored, values_of

# The longest sample the box takes: it is redacted in the request, by every rule.
MAX_SAMPLE_CHARS = 20_000


class RuleTestForm(forms.Form):
    sample = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text="Nothing typed here is stored.",
    )


class RuleListForm(forms.ModelForm):
    """One row of the editable rule list, which shows only `enabled` and `position`.

    RedactionRule.clean() still checks the whole rule, and Django raises ValueError (a 500)
    when a model error names a field the form lacks, e.g. a stored pattern that today's
    safety check refuses. Such errors are shown above the row instead.
    """

    def add_error(self, field: str | None, error: Any) -> None:
        if field is None and isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            kept: dict[str, list[ValidationError]] = {}
            for name, errors in error.error_dict.items():
                if name == NON_FIELD_ERRORS or name in self.fields:
                    kept.setdefault(name, []).extend(errors)
                else:
                    kept.setdefault(NON_FIELD_ERRORS, []).extend(
                        ValidationError(f"{name}: {message}")
                        for message in ValidationError(errors).messages
                    )
            error = ValidationError(kept)
        super().add_error(field, error)


@admin.register(RedactionRule)
class RedactionRuleAdmin(admin.ModelAdmin):
    """Saved, from the change form and from the editable list alike, and deleted through
    audit.services (`redaction_rule_create`/`_update`/`_delete`, by id: the form may rename
    a rule, which redaction_rule_upsert's name key would not follow). The form has already
    run RedactionRule.clean(), which the service runs again; post_save invalidates the
    proxy's snapshot."""

    list_display = ("name", "detector", "scope", "replacement", "enabled", "position")
    list_display_links = ("name",)
    list_editable = ("enabled", "position")
    list_filter = ("detector", "scope", "enabled")
    search_fields = ("name", "pattern")
    ordering = ("position", "id")

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> type[forms.ModelForm]:
        return super().get_changelist_form(request, form=RuleListForm, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: RedactionRule, form: forms.Form, change: bool
    ) -> None:
        values = values_of(obj, form.fields)
        if change:
            adopt(obj, redaction_rule_update(rule=stored(obj), **values).instance)
        else:
            adopt(obj, redaction_rule_create(**values))

    def delete_model(self, request: HttpRequest, obj: RedactionRule) -> None:
        redaction_rule_delete(rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RedactionRule]) -> None:
        for rule in queryset:
            redaction_rule_delete(rule=rule)

    def get_urls(self) -> list[URLPattern]:
        tried = path(
            "try/",
            self.admin_site.admin_view(require_POST(self.try_view)),
            name="audit_redactionrule_try",
        )
        test = path(
            "<path:object_id>/test/",
            self.admin_site.admin_view(self.test_view),
            name="audit_redactionrule_test",
        )
        return [tried, test, *super().get_urls()]

    def try_view(self, request: HttpRequest) -> JsonResponse:
        """The change (or add) form's fields as typed, plus `_try_sample`, `_try_scope`
        ("rule" or "all") and `_try_rule` (the id of the rule being edited, if any):
        the sample redacted, or the reasons it cannot be."""
        rule_id = request.POST.get("_try_rule", "")
        rule = None
        if rule_id:
            if not rule_id.isdigit():
                return _refused(["That rule does not exist."])
            rule = RedactionRule.objects.filter(pk=int(rule_id)).first()
            if rule is None:
                return _refused(["That rule does not exist (deleted meanwhile?)."])
        if not self.has_view_or_change_permission(request, rule):
            raise PermissionDenied
        sample = request.POST.get("_try_sample", "")
        if not sample:
            return _refused(["Type a sample text to try the rule on."])
        if len(sample) > MAX_SAMPLE_CHARS:
            return _refused([f"The sample is longer than {MAX_SAMPLE_CHARS} characters."])
        form = self.get_form(request, rule, change=rule is not None)(
            request.POST, instance=rule or RedactionRule()
        )
        # Validating the form puts what was typed on its (unsaved) instance. The name is
        # left out of the errors: a new rule's name may clash, which a try does not mind.
        form.is_valid()
        problems = [
            f"{'rule' if name == NON_FIELD_ERRORS else name}: {message}"
            for name, messages in form.errors.items()
            if name != "name"
            for message in messages
        ]
        if problems:
            return _refused(problems)
        try:
            preview = rule_preview(
                rule=form.instance,
                sample=sample,
                whole_set=request.POST.get("_try_scope") == "all",
            )
        except PreviewError as exc:
            return _refused(exc.messages)
        return JsonResponse(
            {"audit": preview.audit, "upstream": preview.upstream, "rules": preview.rules}
        )

    def test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        rule = get_object_or_404(RedactionRule, pk=object_id)
        if not self.has_view_or_change_permission(request, rule):
            raise PermissionDenied
        form = RuleTestForm(request.POST or None)
        result = error = None
        if request.method == "POST" and form.is_valid():
            # The same code as the form's "try it", on this one rule as saved (enabled or
            # not), so what the operator sees is what the audit copy would get.
            try:
                result = rule_preview(rule=rule, sample=form.cleaned_data["sample"]).audit
            except PreviewError as exc:
                error = str(exc)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Test rule “{rule.name}”",
            "rule": rule,
            "form": form,
            "result": result,
            "error": error,
            "change_url": reverse("admin:audit_redactionrule_change", args=[rule.pk]),
        }
        return TemplateResponse(request, "admin/audit/redactionrule/test.html", context)


def _refused(messages: list[str]) -> JsonResponse:
    return JsonResponse({"errors": messages}, status=400)
