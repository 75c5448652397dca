"""The management API's permission class (gateway_project/lib/drf.py uses it).

A module of its own because settings name it in REST_FRAMEWORK's
DEFAULT_PERMISSION_CLASSES, which DRF imports while `rest_framework.views` is itself still
loading: this module may import nothing from DRF's views.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request

_VIEW = "%(app_label)s.view_%(model_name)s"


class ModelPermissions(DjangoModelPermissions):
    """DjangoModelPermissions for staff, reads included.

    DRF's own class lets every authenticated user read (GET needs no permission there);
    here a read needs `view_<model>`, a POST `add_`, PUT/PATCH `change_`, DELETE
    `delete_`, as in the admin. The user must be active staff as well: the management API
    is the admin's twin, and a permission granted to a non-staff account for some other
    purpose must not open it.

    A view names the model its permissions are about in `permission_model` (so the check
    runs before `get_queryset`, which may itself look things up and answer 404 to someone
    with no right to know), and may replace the permissions of a method in
    `method_permissions`, e.g. `{"POST": ["tenants.change_apikey"]}` for an action that
    changes an existing row rather than adding one.
    """

    perms_map = {
        "GET": [_VIEW],
        "HEAD": [_VIEW],
        "OPTIONS": [_VIEW],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        # Authentication already refused inactive users (both classes check is_active).
        if not (user and user.is_authenticated and user.is_staff):
            return False
        if getattr(view, "_ignore_model_permissions", False):  # the API root: a list of links
            return True
        return user.has_perms(self.required_permissions(request.method or "", view))

    def required_permissions(self, method: str, view: Any) -> list[str]:
        overrides: dict[str, list[str]] = getattr(view, "method_permissions", {})
        if method in overrides:
            return list(overrides[method])
        model: type[Model] | None = getattr(view, "permission_model", None)
        if model is None:
            model = self._queryset(view).model
        return self.get_required_permissions(method, model)
