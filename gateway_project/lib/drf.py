"""What every view of the DRF management API shares: authentication, model permissions and
the error envelope.

Who may call it: an active staff user who also holds the Django model permission the
request needs (`ModelPermissions`), authenticated by a management token (`Authorization:
Token gwm_...`, for scripts: hashed and expiring, tenants/rest_auth.py) or by the admin's
session (browsers, CSRF enforced): REST_FRAMEWORK's DEFAULT_AUTHENTICATION_CLASSES in
settings name both, by dotted path, because this module is the ground floor and imports no
app. There is no HTTP
Basic: a browser that answers a Basic challenge replays the credentials on every request,
cross-site form posts included, and nothing then asks for a CSRF token.

Errors leave in the same OpenAI envelope as the proxy API, `{"error": {"message", "type",
"param", "code"}}`, so one client-side error path handles both APIs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from gateway_project.lib import errors
from gateway_project.lib.drf_permissions import ModelPermissions

if TYPE_CHECKING:
    from rest_framework.permissions import _PermissionClass

logger = logging.getLogger(__name__)

_NON_FIELD_KEYS = {"non_field_errors", "detail"}


def _error_type(status_code: int) -> str:
    if status_code == status.HTTP_403_FORBIDDEN:
        return "permission_error"
    if status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        return "rate_limit_error"
    if status_code >= 500:
        return "api_error"
    return "invalid_request_error"


def _first_error(detail: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], Any] | None:
    """The first leaf of a (possibly nested) DRF error structure, with its field path."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            found = _first_error(value, (*path, str(key)))
            if found:
                return found
        return None
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            # A list of plain messages belongs to its field; a list of dicts is many objects.
            found = _first_error(value, (*path, str(index)) if isinstance(value, dict) else path)
            if found:
                return found
        return None
    return path, detail


def _envelope(exc: exceptions.APIException, status_code: int) -> dict[str, Any]:
    found = _first_error(exc.detail)
    path, leaf = found if found else ((), exc.default_detail)
    param = ".".join(part for part in path if part not in _NON_FIELD_KEYS) or None
    message = str(leaf)
    if param and isinstance(exc, exceptions.ValidationError):
        message = f"{param}: {message}"
    code = getattr(leaf, "code", None) or exc.default_code
    return {
        "error": {
            "message": message,
            "type": _error_type(status_code),
            "param": param,
            "code": code,
        }
    }


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER, answering every failure in the OpenAI envelope."""
    # The same conversions DRF makes, done first so the envelope keeps Django's message.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        # Not an API error: log the traceback here, never send it.
        logger.error("unhandled error in %s", context.get("view"), exc_info=exc)
        set_rollback()
        return Response(errors.internal_error().body(), status=500)
    # Keep DRF's status and headers (WWW-Authenticate, Retry-After); replace the body.
    response.data = _envelope(exc, response.status_code)
    return response


class ManagementAPIMixin:
    """Model permissions and the OpenAI error envelope, on top of the project's
    authentication (settings: the management token, then the session).

    Token comes first there so an anonymous caller gets 401 (with `WWW-Authenticate: Token`,
    which no browser acts on) rather than a bare 403. Session authentication enforces CSRF
    for every unsafe method. tests/gateway_project/test_rest_urls.py holds every view to both.
    """

    # Typed as APIView types it: every view here inherits from both.
    permission_classes: Sequence[_PermissionClass] = (ModelPermissions,)

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response]:
        return exception_handler
