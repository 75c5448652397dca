"""Project-wide fallbacks: API paths answer in the OpenAI envelope even outside ninja."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views import defaults

from gateway_project.lib import errors

_API_PREFIXES = ("/v1/", "/api/")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(_API_PREFIXES)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return errors.not_found(f"No endpoint at {request.method} {request.path}.").response()
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return errors.internal_error().response()
    return defaults.server_error(request)
