"""Who may read the operational details of /ready and /health/providers.

Their status stays public (a load balancer needs no credentials); what lies behind it,
every provider and model, circuit failure counts, the audit backlog, is for operators:
a staff user signed in to the admin (the session cookie), or a monitoring system sending
`Authorization: Bearer <GATEWAY_METRICS_TOKEN>`. No token configured: only staff.
"""

from __future__ import annotations

import hmac
from enum import Enum

from django.conf import settings
from django.http import HttpRequest


class Access(Enum):
    ANONYMOUS = "anonymous"  # nothing presented: 401
    REFUSED = "refused"  # a wrong token, or a session that is not staff: 403
    OPERATOR = "operator"


def bearer_token(request: HttpRequest) -> str | None:
    """The token of `Authorization: Bearer <token>`, None when there is none."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def operator_access(request: HttpRequest) -> Access:
    presented = bearer_token(request)
    if presented is not None:
        expected = settings.GATEWAY_METRICS_TOKEN
        # compare_digest takes the same time wherever the strings differ, so the answer's
        # timing does not spell out the token character by character.
        if expected and hmac.compare_digest(presented.encode(), expected.encode()):
            return Access.OPERATOR
        return Access.REFUSED
    auser = getattr(request, "auser", None)  # set by AuthenticationMiddleware
    if auser is None:
        return Access.ANONYMOUS
    try:
        # `request.user` would hit the session and the database from the event loop.
        user = await auser()
    except Exception:
        # Sessions live in the database: while it is down /ready must still say 503,
        # not fail, so a cookie that cannot be read counts as no cookie.
        return Access.ANONYMOUS
    if not user.is_authenticated:
        return Access.ANONYMOUS
    return Access.OPERATOR if user.is_active and user.is_staff else Access.REFUSED
