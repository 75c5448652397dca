"""Admin pages for configuration versions: the list, one version (its YAML, a download), a
diff between any two (or a version and the live configuration), and the rollback with its
confirmation step.

Read-only as a model: versions are written by the recorder, never by a form. Viewing needs
`routing.view_configversion`, rolling back `routing.rollback_configversion` (Ops hold both,
Finance neither: routing migration 0005). The rollback goes through
`routing.versions.services.config_version_rollback`, the config importer's path.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.dateparse import parse_datetime

from gateway_project.lib.admin_writes import ReadOnlyAdmin
from routing.config_io import ConfigError
from routing.models import ConfigVersion
from routing.versions.diff import text_diff
from routing.versions.selectors import (
    config_document_live,
    config_version_before,
    config_version_document,
    config_version_get,
    config_version_list,
    config_version_serving,
)
from routing.versions.services import Rollback, config_version_rollback

ROLLBACK_PERMISSION = "routing.rollback_configversion"
LIVE = "live"
_PER_PAGE = 50
_HASH = re.compile(r"^[0-9a-f]{16}$")


def _one_line(text: str) -> str:
    return " ".join(text.split())


@admin.register(ConfigVersion)
class ConfigVersionAdmin(ReadOnlyAdmin):
    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("diff/", view(self.diff_view), name="routing_configversion_diff"),
            path(
                "by-hash/<str:routing_version>/",
                view(self.by_hash_view),
                name="routing_configversion_by_hash",
            ),
            path("<int:pk>/yaml/", view(self.yaml_view), name="routing_configversion_yaml"),
            path(
                "<int:pk>/rollback/",
                view(self.rollback_view),
                name="routing_configversion_rollback",
            ),
            *super().get_urls(),
        ]

    # --- helpers ---

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, "title": title, **extra}

    def _viewer(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def _missing(self, request: HttpRequest, pk: object) -> HttpResponseRedirect:
        messages.error(request, f"There is no configuration version {pk}.")
        return redirect("admin:routing_configversion_changelist")

    # --- the list and one version ---

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._viewer(request)
        routing_version = request.GET.get("routing_version", "").strip()
        page = Paginator(config_version_list(routing_version=routing_version), _PER_PAGE)
        versions = page.get_page(request.GET.get("p"))
        context = self._context(
            request,
            "Configuration versions",
            versions=versions,
            routing_version=routing_version,
            diff_url=reverse("admin:routing_configversion_diff"),
        )
        return TemplateResponse(request, "admin/routing/configversion/list.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        self._viewer(request)
        version = config_version_get(pk=object_id)
        if version is None:
            return self._missing(request, object_id)
        previous = config_version_before(version=version)
        diff_url = reverse("admin:routing_configversion_diff")
        requests_url = None
        if request.user.has_perm("audit.view_auditevent"):
            query = urlencode({"config_version": version.routing_version})
            requests_url = f"{reverse('admin:audit_auditevent_changelist')}?{query}"
        context = self._context(
            request,
            f"Configuration version {version.pk}",
            version=version,
            document=config_version_document(version=version),
            previous=previous,
            yaml_url=reverse("admin:routing_configversion_yaml", args=[version.pk]),
            previous_diff_url=(
                f"{diff_url}?{urlencode({'a': previous.pk, 'b': version.pk})}" if previous else None
            ),
            live_diff_url=f"{diff_url}?{urlencode({'a': version.pk, 'b': LIVE})}",
            rollback_url=(
                reverse("admin:routing_configversion_rollback", args=[version.pk])
                if request.user.has_perm(ROLLBACK_PERMISSION)
                else None
            ),
            requests_url=requests_url,
            rollback_of_url=(
                reverse("admin:routing_configversion_change", args=[version.rollback_of_id])
                if version.rollback_of_id
                else None
            ),
        )
        return TemplateResponse(request, "admin/routing/configversion/detail.html", context)

    def yaml_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._viewer(request)
        version = config_version_get(pk=pk)
        if version is None:
            return self._missing(request, pk)
        header = (
            f"# Configuration version {version.pk}, recorded "
            f"{version.created_at.isoformat(timespec='seconds')} by {_one_line(version.actor)}: "
            f"{_one_line(version.summary)}\n"
        )
        document = config_version_document(version=version)
        response = HttpResponse(header + document, content_type="application/yaml")
        response["Content-Disposition"] = (
            f'attachment; filename="gateway-config-v{version.pk}.yaml"'
        )
        return response

    def by_hash_view(self, request: HttpRequest, routing_version: str) -> HttpResponse:
        """Where an audit row's config_version links: the version it was served under."""
        self._viewer(request)
        if not _HASH.match(routing_version):
            messages.error(request, f"{routing_version!r} is not a configuration hash.")
            return redirect("admin:routing_configversion_changelist")
        at = parse_datetime(request.GET.get("at", ""))
        version = config_version_serving(routing_version=routing_version, at=at)
        if version is None:
            messages.warning(
                request,
                f"No recorded version has the routing hash {routing_version}: the request was "
                "served before version history began, or under prices scheduled in advance.",
            )
            url = reverse("admin:routing_configversion_changelist")
            return redirect(f"{url}?{urlencode({'routing_version': routing_version})}")
        return redirect("admin:routing_configversion_change", version.pk)

    # --- diff ---

    def _side(self, value: str) -> tuple[str, str] | None:
        """A version number or "live": (its title, its document), or None if unknown."""
        if value == LIVE:
            return "the live configuration", config_document_live()
        version = config_version_get(pk=value)
        if version is None:
            return None
        return f"version {version.pk}", config_version_document(version=version)

    def diff_view(self, request: HttpRequest) -> HttpResponse:
        self._viewer(request)
        a, b = request.GET.get("a", "").strip(), request.GET.get("b", "").strip()
        if not a and not b:  # the latest change by default
            latest = config_version_list().first()
            previous = config_version_before(version=latest) if latest else None
            a, b = (str(previous.pk) if previous else ""), (str(latest.pk) if latest else "")
        errors = []
        sides = {}
        for name, value in (("a", a), ("b", b)):
            if not value:
                errors.append(f"Choose a version to compare ({name}).")
            elif (side := self._side(value)) is None:
                errors.append(f"There is no configuration version {value!r} ({name}).")
            else:
                sides[name] = side
        context = self._context(request, "Compare configuration versions", a=a, b=b, errors=errors)
        if not errors:
            (a_title, a_text), (b_title, b_text) = sides["a"], sides["b"]
            context.update(a_title=a_title, b_title=b_title, diff=text_diff(a_text, b_text))
        status = 400 if errors else 200
        return TemplateResponse(
            request, "admin/routing/configversion/diff.html", context, status=status
        )

    # --- rollback ---

    def rollback_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._viewer(request)
        if not request.user.has_perm(ROLLBACK_PERMISSION):
            raise PermissionDenied
        version = config_version_get(pk=pk)
        if version is None:
            return self._missing(request, pk)
        confirmed = request.method == "POST"
        try:
            result = config_version_rollback(version=version, dry_run=not confirmed)
        except ConfigError as exc:
            context = self._context(
                request,
                f"Roll back to version {version.pk}",
                version=version,
                issues=[f"{issue.path}: {issue.message}" for issue in exc.issues],
            )
            return TemplateResponse(
                request, "admin/routing/configversion/rollback.html", context, status=409
            )
        if confirmed:
            return self._rolled_back(request, result)
        context = self._context(
            request,
            f"Roll back to version {version.pk}",
            version=version,
            result=result,
            diff=text_diff(config_document_live(), config_version_document(version=version)),
            change_url=reverse("admin:routing_configversion_change", args=[version.pk]),
        )
        return TemplateResponse(request, "admin/routing/configversion/rollback.html", context)

    def _rolled_back(self, request: HttpRequest, result: Rollback) -> HttpResponse:
        target = result.target
        if result.not_restored:
            messages.warning(
                request,
                "Still different from version "
                f"{target.pk} (a rollback never deletes providers, models or tenants: "
                f"disable them instead): {'; '.join(result.not_restored)}.",
            )
        if not result.report.changed:
            messages.info(
                request, f"Nothing to change: the configuration is version {target.pk}'s."
            )
            return redirect("admin:routing_configversion_change", target.pk)
        if result.recorded is None:  # the recorder failed (logged); the rollback stands
            messages.success(request, f"Rolled back to version {target.pk}.")
            return redirect("admin:routing_configversion_changelist")
        messages.success(
            request,
            f"Rolled back to version {target.pk}, recorded as version {result.recorded.pk}.",
        )
        return redirect("admin:routing_configversion_change", result.recorded.pk)
