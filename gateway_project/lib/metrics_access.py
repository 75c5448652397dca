"""Who may scrape /metrics: a monitoring system with the metrics token, or a client address
in GATEWAY_METRICS_ALLOWED_IPS (this machine only, by default).

- `Authorization: Bearer <GATEWAY_METRICS_TOKEN>` is let in from anywhere. A wrong token is
  refused (403) even from an allowed address: a scraper configured with a stale token
  should hear about it rather than be let in by where it runs.
- Without a token, the client address must be in an allowed network; otherwise 401 when a
  token is configured (presenting it would help), 403 when none is (nothing would).

The client address is the connection's (REMOTE_ADDR, as the server reports it). Any
client can send X-Forwarded-For, so it is believed only from the reverse proxies listed in
GATEWAY_METRICS_TRUSTED_PROXIES: then the client is the right-most address in it that is
not one of those proxies. (uvicorn applies its own FORWARDED_ALLOW_IPS before this, by the
same rule; its default, loopback, can only make a local request look remote.)
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest

from gateway_project.lib import errors
from gateway_project.lib.operator_access import bearer_token

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:8000"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "10.0.0.1:8000"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(request: HttpRequest) -> Address | None:
    """The scraper's address (None when it cannot be told)."""
    address = _address(request.META.get("REMOTE_ADDR") or "")
    proxies = _networks(tuple(settings.GATEWAY_METRICS_TRUSTED_PROXIES))
    if address is None or not proxies or not _within(address, proxies):
        return address
    forwarded = request.headers.get("X-Forwarded-For", "")
    for hop in reversed([part for part in forwarded.split(",") if part.strip()]):
        address = _address(hop)
        if address is None:
            return None  # a hop we cannot read: nobody to vouch for what lies before it
        if not _within(address, proxies):
            return address
    return address


def metrics_refusal(request: HttpRequest) -> errors.GatewayError | None:
    """None when the request may read /metrics, else the error to answer with."""
    expected = settings.GATEWAY_METRICS_TOKEN
    presented = bearer_token(request)
    if presented is not None:
        # compare_digest: the answer's timing does not spell the token out.
        if expected and hmac.compare_digest(presented.encode(), expected.encode()):
            return None
        return errors.permission_denied(
            "That is not the metrics token (GATEWAY_METRICS_TOKEN).", code="invalid_metrics_token"
        )
    address = client_address(request)
    allowed = _networks(tuple(settings.GATEWAY_METRICS_ALLOWED_IPS))
    if address is not None and _within(address, allowed):
        return None
    where = f"Requests from {address}" if address is not None else "Requests from this client"
    if expected:
        return errors.GatewayError(
            401,
            f"{where} need the metrics token: Authorization: Bearer <GATEWAY_METRICS_TOKEN>.",
            code="not_authenticated",
            headers={"WWW-Authenticate": 'Bearer realm="gateway-metrics"'},
        )
    return errors.permission_denied(
        f"{where} may not read the metrics: allow the address in GATEWAY_METRICS_ALLOWED_IPS, "
        "or set GATEWAY_METRICS_TOKEN and send it as a bearer token.",
        code="address_not_allowed",
    )
