"""Per-request routing hints: what a client may ask of the router, and how it asks.

Two sources, read together:

- the body's `x-gateway` object (never sent upstream)::

      "x-gateway": {
          "provider": "anthropic",             # one preferred provider
          "prefer_providers": ["openai"],      # more preferred providers, in order
          "exclude_providers": ["azure"],      # never send this request there
          "timeout": 30,                       # seconds, 0 < t <= 600
          "cache": false,                      # skip the response cache
          "metadata": {"feature": "chat"}      # tags for the audit row
      }

- headers, for clients that cannot change the body: `x-gateway-prefer-provider` and
  `x-gateway-exclude-provider` (comma lists), `x-gateway-timeout` (seconds) and
  `x-gateway-cache: bypass` (or `no-cache`).

When both sources speak, the stricter wins: exclusions are the union, the smaller
timeout applies, and the cache is off if either turns it off. Preferences are the body's
(`provider` first) followed by the header's. Provider names compare case-insensitively.

`x-gateway` is the gateway's own namespace, so an unknown key in it is refused rather
than ignored: a misspelt `exclude_providers` silently dropped would send the prompt to
the very provider the client meant to avoid. Routing hints in other places (a top-level
`routing` object, as some gateways take) are not read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice

from gateway_project.lib import errors

MAX_TIMEOUT_S = 600.0
MAX_PROVIDERS = 20  # per list; a route never has more, and it bounds the work per request
MAX_TAGS = 50
MAX_TAG_KEY_CHARS = 100
MAX_TAG_VALUE_CHARS = 500

PREFER_HEADER = "x-gateway-prefer-provider"
EXCLUDE_HEADER = "x-gateway-exclude-provider"
TIMEOUT_HEADER = "x-gateway-timeout"
CACHE_HEADER = "x-gateway-cache"
_CACHE_OFF_VALUES = frozenset({"bypass", "no-cache"})

_EXTENSION_KEYS = frozenset(
    {"provider", "prefer_providers", "exclude_providers", "timeout", "cache", "metadata"}
)
# Provider names are slugs (`providers.models.Provider.name`); anything else is a typo,
# like a space-separated list where a comma list was meant.
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


@dataclass(frozen=True, slots=True)
class RoutingHints:
    """What one request asked of the router. The defaults mean "nothing asked"."""

    prefer_providers: tuple[str, ...] = ()  # lower-case, in order of preference
    exclude_providers: tuple[str, ...] = ()  # lower-case
    timeout_s: float | None = None
    cache: bool = True
    # None when the request sent no `metadata` (so the audit row gets no `tags` key).
    tags: dict[str, str] | None = field(default=None, hash=False)

    @property
    def affects_order(self) -> bool:
        return bool(self.prefer_providers or self.exclude_providers)


NO_HINTS = RoutingHints()


def parse_hints(*, extension: dict, headers: Mapping[str, str]) -> RoutingHints:
    """The hints of one request, or a 400 `GatewayError` naming the offending `param`.

    `extension` is the body's `x-gateway` value as the client sent it (`{}` when absent;
    anything but an object is refused here). `headers` should be `request.headers`, which
    Django matches case-insensitively; a plain dict must use lower-case names.
    """
    if not isinstance(extension, dict):
        raise errors.bad_request("'x-gateway' must be an object.", param="x-gateway")
    prefer_header = headers.get(PREFER_HEADER)
    exclude_header = headers.get(EXCLUDE_HEADER)
    timeout_header = headers.get(TIMEOUT_HEADER)
    cache_header = headers.get(CACHE_HEADER)
    if not extension and not (prefer_header or exclude_header or timeout_header or cache_header):
        return NO_HINTS  # the common case: nothing to parse, nothing to allocate

    _check_extension_keys(extension)
    prefer: list[str] = []
    provider = extension.get("provider")
    if provider is not None:
        prefer.append(_provider_name(provider, param="x-gateway.provider"))
    prefer.extend(_body_providers(extension.get("prefer_providers"), "prefer_providers"))
    prefer.extend(_header_providers(prefer_header, PREFER_HEADER))
    exclude = [
        *_body_providers(extension.get("exclude_providers"), "exclude_providers"),
        *_header_providers(exclude_header, EXCLUDE_HEADER),
    ]
    timeouts = [
        t
        for t in (
            _body_timeout(extension.get("timeout")),
            _header_timeout(timeout_header),
        )
        if t is not None
    ]
    cache = _cache_wanted(extension.get("cache"), cache_header)
    return RoutingHints(
        prefer_providers=_unique(prefer),
        exclude_providers=_unique(exclude),
        timeout_s=min(timeouts) if timeouts else None,
        cache=cache,
        tags=parse_tags(extension.get("metadata")),
    )


def _check_extension_keys(extension: dict) -> None:
    for key in extension:
        if key not in _EXTENSION_KEYS:
            raise errors.bad_request(
                f"'x-gateway.{key}' is not a gateway option; the options are "
                f"{', '.join(sorted(_EXTENSION_KEYS))}.",
                param=f"x-gateway.{key}",
            )


def _cache_wanted(value: object, header: str | None) -> bool:
    """Whether the response cache may answer: off if either the body or the header says so."""
    if value is None:
        value = True
    elif not isinstance(value, bool):
        raise errors.bad_request("'x-gateway.cache' must be a boolean.", param="x-gateway.cache")
    if header is not None and header.strip():
        if header.strip().lower() not in _CACHE_OFF_VALUES:
            raise errors.bad_request(
                f"'{CACHE_HEADER}' must be 'bypass' or 'no-cache'.", param=CACHE_HEADER
            )
        value = False
    return value


def parse_tags(value: object) -> dict[str, str] | None:
    """`x-gateway.metadata` as audit tags: strings, at most 50 keys, 100/500 characters."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.bad_request(
            "'x-gateway.metadata' must be an object.", param="x-gateway.metadata"
        )
    return {
        str(k)[:MAX_TAG_KEY_CHARS]: str(v)[:MAX_TAG_VALUE_CHARS]
        for k, v in islice(value.items(), MAX_TAGS)
    }


def _provider_name(value: object, *, param: str) -> str:
    if not isinstance(value, str) or not _PROVIDER_NAME.fullmatch(value):
        raise errors.bad_request(
            f"'{param}' must be a provider name (letters, digits, '-' or '_'); got "
            f"{str(value)[:50]!r}.",
            param=param,
        )
    return value.lower()


def _body_providers(value: object, name: str) -> list[str]:
    if value is None:
        return []
    param = f"x-gateway.{name}"
    if not isinstance(value, list):
        raise errors.bad_request(f"'{param}' must be an array of provider names.", param=param)
    if len(value) > MAX_PROVIDERS:
        raise errors.bad_request(
            f"'{param}' may name at most {MAX_PROVIDERS} providers.", param=param
        )
    return [_provider_name(item, param=f"{param}[{i}]") for i, item in enumerate(value)]


def _header_providers(value: str | None, header: str) -> list[str]:
    if not value:
        return []
    names = [part.strip() for part in value.split(",")]
    names = [name for name in names if name]
    if len(names) > MAX_PROVIDERS:
        raise errors.bad_request(
            f"'{header}' may name at most {MAX_PROVIDERS} providers.", param=header
        )
    return [_provider_name(name, param=header) for name in names]


def _checked_timeout(seconds: float, param: str) -> float:
    # Compared before any float(): NaN and infinities fail it, and so does a huge int.
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise errors.bad_request(
            f"'{param}' must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}.",
            param=param,
        )
    return float(seconds)


def _body_timeout(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise errors.bad_request(
            "'x-gateway.timeout' must be a number of seconds.", param="x-gateway.timeout"
        )
    return _checked_timeout(value, "x-gateway.timeout")


def _header_timeout(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise errors.bad_request(
            f"'{TIMEOUT_HEADER}' must be a number of seconds; got {value[:50]!r}.",
            param=TIMEOUT_HEADER,
        ) from None
    return _checked_timeout(seconds, TIMEOUT_HEADER)


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))
