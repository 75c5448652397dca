"""The failure taxonomy shared by the adapters (providers.calls), status by status."""

from __future__ import annotations

import httpx
import pytest

from providers.calls import error_envelope, status_error, transport_error


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, "client_error", False),
        (413, "client_error", False),
        (422, "client_error", False),
        (401, "upstream_error", True),
        (403, "upstream_error", True),
        (404, "upstream_error", True),
        (408, "timeout", True),
        (409, "server_error", True),
        (429, "rate_limited", True),
        (500, "server_error", True),
        (529, "server_error", True),
    ],
)
def test_each_status_gets_its_kind(status, kind, retryable):
    error = status_error(status, httpx.Headers(), b"")

    assert (error.status, error.kind, error.retryable) == (status, kind, retryable)


def test_an_upstream_auth_failure_is_not_blamed_on_the_client():
    # The client's gateway key is fine; our upstream key is not. Another target may work.
    error = status_error(401, httpx.Headers(), b'{"error": {"message": "bad key"}}')

    assert error.retryable


def test_an_openai_envelope_keeps_param_and_code_and_gains_missing_fields():
    body = error_envelope(b'{"error": {"message": "nope", "code": "x"}}', 400)

    assert body == {
        "error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": "x"}
    }


def test_an_anthropic_envelope_becomes_an_openai_one():
    raw = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'

    assert error_envelope(raw, 529)["error"] == {
        "message": "Overloaded",
        "type": "api_error",
        "param": None,
        "code": None,
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b'{"error": "plain string"}', "plain string"),
        (b'{"detail": "framework default"}', '{"detail": "framework default"}'),
        (b"", "Upstream answered HTTP 502."),
    ],
)
def test_any_other_error_body_is_wrapped_in_an_envelope(raw, message):
    assert error_envelope(raw, 502)["error"]["message"] == message


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), "connect_error"),
        (httpx.ReadError("reset"), "connect_error"),
        (httpx.ConnectTimeout("slow"), "timeout"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.PoolTimeout("busy"), "timeout"),
        (TimeoutError(), "timeout"),
        (httpx.RemoteProtocolError("garbage"), "bad_response"),
    ],
)
def test_transport_failures_get_their_kind(exc, kind):
    error = transport_error(exc)

    assert (error.kind, error.retryable, error.status) == (kind, True, None)
