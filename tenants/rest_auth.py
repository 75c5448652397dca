"""Token authentication of the management API (DRF): `Authorization: Token gwm_...`.

django-rest-knox does the work: the row is found by the token's first characters, then the
SHA-512 of the whole token is compared in constant time with the stored digest, and an
expired token is deleted and refused. On top of knox: the user must still be active staff
(a token outlives a demotion otherwise), its last use is recorded, and a header that is not
UTF-8 is a 401 rather than a 500.

Settings name this class in REST_FRAMEWORK, which DRF imports while `rest_framework.views`
is still loading: this module may import nothing from DRF's views.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from knox.auth import TokenAuthentication
from rest_framework import exceptions

from tenants.models import ManagementToken
from tenants.services import management_token_touch


class ManagementTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, token: bytes) -> tuple[Any, ManagementToken]:
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)

    def validate_user(self, auth_token: ManagementToken) -> tuple[Any, ManagementToken]:
        user = auth_token.user
        if not (user.is_active and user.is_staff):
            # The same answer as an unknown token: nothing to learn about the account.
            raise exceptions.AuthenticationFailed("Invalid token.")
        management_token_touch(token=auth_token, now=timezone.now())
        return user, auth_token
