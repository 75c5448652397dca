"""The one NinjaAPI instance: every app's router is mounted here, and every error it can
raise leaves as the OpenAI envelope (ninja's own 422 `{"detail": ...}` never does)."""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="LLM Gateway",
    version="1",
    description="OpenAI-compatible proxy API.",
    urls_namespace="gateway",
    docs_url="/docs",
)


@api.exception_handler(GatewayError)
def _gateway_error(request: HttpRequest, exc: GatewayError) -> HttpResponse:
    return exc.response()


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    location = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    return errors.bad_request(first.get("msg", "Invalid request."), param=location).response()


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return errors.invalid_api_key().response()


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return GatewayError(exc.status_code, str(exc.message), type="invalid_request_error").response()


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return errors.not_found().response()


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error on %s", request.path)
    return errors.internal_error().response()


def _mount() -> None:
    from gateway_project.health import router as health_router
    from gateway_project.metrics import router as metrics_router
    from routing.api import router as proxy_router

    api.add_router("/v1", proxy_router)
    api.add_router("", health_router)
    api.add_router("", metrics_router)


_mount()
