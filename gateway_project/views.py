"""Project-wide pages: the landing page, and the fallbacks that answer API paths in the
OpenAI envelope even outside ninja."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.http import require_safe

from gateway_project.lib import errors

_API_PREFIXES = ("/v1/", "/api/")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(_API_PREFIXES)


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """A map of the gateway at "/" (also the admin's "View site")."""
    return render(request, "landing.html", {"api_base": request.build_absolute_uri("/v1")})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return errors.not_found(f"No endpoint at {request.method} {request.path}.").response()
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return errors.internal_error().response()
    return defaults.server_error(request)
