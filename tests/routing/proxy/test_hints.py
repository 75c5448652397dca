from __future__ import annotations

import pytest
from django.http.request import HttpHeaders

from gateway_project.lib.errors import GatewayError
from routing.proxy.hints import NO_HINTS, RoutingHints, parse_hints


def hints(extension: object = None, **headers: str) -> RoutingHints:
    return parse_hints(
        extension={} if extension is None else extension,
        headers={name.replace("_", "-"): value for name, value in headers.items()},
    )


def test_a_request_without_hints_gets_the_shared_empty_hints():
    assert hints() is NO_HINTS
    assert RoutingHints(cache=True, timeout_s=None, tags=None) == NO_HINTS
    assert not NO_HINTS.affects_order


def test_the_body_extension_is_read_field_by_field():
    parsed = hints(
        {
            "provider": "anthropic",
            "prefer_providers": ["openai"],
            "exclude_providers": ["azure", "local"],
            "timeout": 30,
            "cache": False,
            "metadata": {"feature": "chat", "user_id": "u_123"},
        }
    )
    assert parsed == RoutingHints(
        prefer_providers=("anthropic", "openai"),
        exclude_providers=("azure", "local"),
        timeout_s=30.0,
        cache=False,
        tags={"feature": "chat", "user_id": "u_123"},
    )
    assert isinstance(parsed.timeout_s, float)
    assert parsed.affects_order


def test_the_seed_style_extension_is_understood():
    parsed = hints({"cache": False, "timeout": 30, "provider": "anthropic", "metadata": {}})
    assert parsed.prefer_providers == ("anthropic",)
    assert parsed.cache is False
    assert parsed.timeout_s == 30.0
    assert parsed.tags == {}


def test_null_fields_in_the_extension_count_as_absent():
    parsed = hints(
        {
            "provider": None,
            "prefer_providers": None,
            "exclude_providers": None,
            "timeout": None,
            "cache": None,
            "metadata": None,
        }
    )
    assert parsed == NO_HINTS


def test_tags_are_stringified_and_truncated_as_the_audit_row_expects():
    many = {f"k{i}": i for i in range(80)}
    parsed = hints({"metadata": many})
    assert parsed.tags is not None
    assert len(parsed.tags) == 50
    assert parsed.tags["k0"] == "0"
    assert "k50" not in parsed.tags

    parsed = hints({"metadata": {"x" * 150: "y" * 900, "flag": True, "n": None}})
    assert parsed.tags == {"x" * 100: "y" * 500, "flag": "True", "n": "None"}


def test_headers_give_preferences_exclusions_timeout_and_cache():
    parsed = hints(
        x_gateway_prefer_provider=" anthropic , openai",
        x_gateway_exclude_provider="azure,,local",
        x_gateway_timeout="12.5",
        x_gateway_cache="bypass",
    )
    assert parsed == RoutingHints(
        prefer_providers=("anthropic", "openai"),
        exclude_providers=("azure", "local"),
        timeout_s=12.5,
        cache=False,
    )


@pytest.mark.parametrize("value", ["bypass", "no-cache", "No-Cache", " BYPASS "])
def test_the_cache_header_turns_the_cache_off(value):
    assert hints(x_gateway_cache=value).cache is False


def test_empty_headers_count_as_absent():
    parsed = hints(
        x_gateway_prefer_provider="",
        x_gateway_exclude_provider=" , ",
        x_gateway_timeout=" ",
        x_gateway_cache="",
    )
    assert parsed == NO_HINTS


def test_headers_are_matched_case_insensitively_on_a_django_request():
    headers = HttpHeaders(
        {"HTTP_X_GATEWAY_TIMEOUT": "7", "HTTP_X_GATEWAY_EXCLUDE_PROVIDER": "OpenAI"}
    )
    parsed = parse_hints(extension={}, headers=headers)
    assert parsed.timeout_s == 7.0
    assert parsed.exclude_providers == ("openai",)


def test_when_body_and_headers_both_speak_the_stricter_wins():
    parsed = hints(
        {"timeout": 30, "exclude_providers": ["azure"], "cache": True},
        x_gateway_timeout="10",
        x_gateway_exclude_provider="local",
        x_gateway_cache="no-cache",
    )
    assert parsed.timeout_s == 10.0
    assert parsed.exclude_providers == ("azure", "local")
    assert parsed.cache is False

    assert hints({"timeout": 5}, x_gateway_timeout="10").timeout_s == 5.0


def test_preferences_keep_body_order_then_header_order_without_duplicates():
    parsed = hints(
        {"provider": "Local", "prefer_providers": ["openai", "local"]},
        x_gateway_prefer_provider="anthropic,openai",
    )
    assert parsed.prefer_providers == ("local", "openai", "anthropic")


@pytest.mark.parametrize(
    ("extension", "headers", "param"),
    [
        (["provider"], {}, "x-gateway"),
        ("anthropic", {}, "x-gateway"),
        ({"routing": {"preferred_providers": ["a"]}}, {}, "x-gateway.routing"),
        ({"exclude_provider": ["azure"]}, {}, "x-gateway.exclude_provider"),
        ({"provider": 42}, {}, "x-gateway.provider"),
        ({"provider": ""}, {}, "x-gateway.provider"),
        ({"provider": "open ai"}, {}, "x-gateway.provider"),
        ({"provider": "p" * 101}, {}, "x-gateway.provider"),
        ({"prefer_providers": "openai"}, {}, "x-gateway.prefer_providers"),
        ({"prefer_providers": ["openai", 1]}, {}, "x-gateway.prefer_providers[1]"),
        ({"prefer_providers": [f"p{i}" for i in range(21)]}, {}, "x-gateway.prefer_providers"),
        ({"exclude_providers": {"azure": True}}, {}, "x-gateway.exclude_providers"),
        ({"exclude_providers": ["azure", ""]}, {}, "x-gateway.exclude_providers[1]"),
        ({"exclude_providers": ["azure,local"]}, {}, "x-gateway.exclude_providers[0]"),
        ({"timeout": "30"}, {}, "x-gateway.timeout"),
        ({"timeout": True}, {}, "x-gateway.timeout"),
        ({"timeout": 0}, {}, "x-gateway.timeout"),
        ({"timeout": -1}, {}, "x-gateway.timeout"),
        ({"timeout": 600.5}, {}, "x-gateway.timeout"),
        ({"timeout": 10**400}, {}, "x-gateway.timeout"),
        ({"timeout": float("nan")}, {}, "x-gateway.timeout"),
        ({"timeout": float("inf")}, {}, "x-gateway.timeout"),
        ({"cache": "false"}, {}, "x-gateway.cache"),
        ({"cache": 0}, {}, "x-gateway.cache"),
        ({"metadata": ["feature"]}, {}, "x-gateway.metadata"),
        ({"metadata": "chat"}, {}, "x-gateway.metadata"),
        ({}, {"x-gateway-prefer-provider": "openai anthropic"}, "x-gateway-prefer-provider"),
        ({}, {"x-gateway-exclude-provider": "openai;azure"}, "x-gateway-exclude-provider"),
        (
            {},
            {"x-gateway-exclude-provider": ",".join(f"p{i}" for i in range(21))},
            "x-gateway-exclude-provider",
        ),
        ({}, {"x-gateway-timeout": "30s"}, "x-gateway-timeout"),
        ({}, {"x-gateway-timeout": "0"}, "x-gateway-timeout"),
        ({}, {"x-gateway-timeout": "-5"}, "x-gateway-timeout"),
        ({}, {"x-gateway-timeout": "601"}, "x-gateway-timeout"),
        ({}, {"x-gateway-timeout": "nan"}, "x-gateway-timeout"),
        ({}, {"x-gateway-timeout": "inf"}, "x-gateway-timeout"),
        ({}, {"x-gateway-cache": "yes"}, "x-gateway-cache"),
        ({}, {"x-gateway-cache": "false"}, "x-gateway-cache"),
    ],
)
def test_malformed_hints_are_a_400_naming_the_param(extension, headers, param):
    with pytest.raises(GatewayError) as caught:
        parse_hints(extension=extension, headers=headers)
    error = caught.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.param == param
    assert error.message


def test_the_largest_accepted_timeout_is_ten_minutes():
    assert hints({"timeout": 600}).timeout_s == 600.0
    assert hints(x_gateway_timeout="600").timeout_s == 600.0
    assert hints({"timeout": 0.001}).timeout_s == 0.001


def test_an_unknown_extension_key_is_named_with_the_accepted_ones():
    with pytest.raises(GatewayError) as caught:
        hints({"exclude_provider": ["azure"]})
    assert "exclude_providers" in caught.value.message
