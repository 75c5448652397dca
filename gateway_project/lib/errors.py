"""The OpenAI error envelope: the only shape in which a failure reaches an API client."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from django.http import HttpResponse


@dataclass
class GatewayError(Exception):
    """A failure with its HTTP status and the OpenAI error fields.

    `outcome` says how the audit row files it: requests refused by the gateway are
    "rejected", failures of every upstream target are "upstream_error".
    """

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str = "rejected"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> HttpResponse:
        response = HttpResponse(
            orjson.dumps(self.body()), status=self.status, content_type="application/json"
        )
        for name, value in self.headers.items():
            response[name] = value
        return response


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def invalid_api_key(message: str = "Invalid API key.") -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key")


def permission_denied(message: str, *, code: str | None = None) -> GatewayError:
    return GatewayError(403, message, type="permission_error", code=code)


def model_not_found(name: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model or route '{name}' does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


def not_found(message: str = "Not found.") -> GatewayError:
    return GatewayError(404, message, code="not_found")


def payload_too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"Request body is larger than {limit} bytes.", code="payload_too_large"
    )


def upstream_failed(
    message: str, *, status: int = 502, code: str = "upstream_error"
) -> GatewayError:
    return GatewayError(status, message, type="api_error", code=code, outcome="upstream_error")


def internal_error() -> GatewayError:
    return GatewayError(
        500,
        "The gateway hit an internal error.",
        type="api_error",
        code="internal_error",
        outcome="error",
    )
