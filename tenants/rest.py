"""Management API for tenants and their keys (staff with model permissions).

                                                        permission needed
GET/POST        /api/v1/tenants/                        view_tenant / add_tenant
GET/PUT/PATCH   /api/v1/tenants/<slug>/                 view_tenant / change_tenant
                                                        (suspending, un-suspending too)
GET/POST        /api/v1/tenants/<slug>/keys/            view_apikey / add_apikey (issue)
GET             /api/v1/tenants/<slug>/keys/<id>/       view_apikey
POST            /api/v1/tenants/<slug>/keys/<id>/revoke/  change_apikey
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from gateway_project.lib.drf import ManagementAPIMixin
from gateway_project.lib.ratelimit import AuthFailureRateLimitMixin
from tenants.models import ApiKey, Tenant
from tenants.selectors import api_keys_for_tenant, tenant_list
from tenants.serializers import ApiKeyIssueSerializer, ApiKeySerializer, TenantSerializer
from tenants.services import api_key_issue, api_key_revoke


class TenantViewSet(
    AuthFailureRateLimitMixin,
    ManagementAPIMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = TenantSerializer
    lookup_field = "slug"
    permission_model = Tenant

    def get_queryset(self) -> QuerySet[Tenant]:
        return tenant_list()


class _TenantKeysBase(AuthFailureRateLimitMixin, ManagementAPIMixin, generics.GenericAPIView):
    serializer_class = ApiKeySerializer
    # Checked before the tenant is looked up: no 404-or-403 answer tells someone without
    # the permission which tenant slugs exist.
    permission_model = ApiKey

    def get_tenant(self) -> Tenant:
        return get_object_or_404(Tenant, slug=self.kwargs["slug"])

    def get_queryset(self) -> Any:
        return api_keys_for_tenant(tenant=self.get_tenant()).select_related("tenant")


class TenantKeysView(_TenantKeysBase):
    def get_serializer_class(self) -> type[BaseSerializer]:
        # Also what the browsable API draws its POST form from.
        if self.request.method == "POST":
            return ApiKeyIssueSerializer
        return ApiKeySerializer

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if self.request.method == "POST":
            context["tenant"] = self.get_tenant()
        return context

    # A list, though GenericAPIView's GET reads as one key to the schema generator.
    @extend_schema(operation_id="tenants_keys_list", responses=ApiKeySerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        serializer = ApiKeySerializer(self.get_queryset(), many=True)
        return Response(serializer.data)

    def post(self, request: Request, slug: str) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = api_key_issue(tenant=serializer.context["tenant"], **serializer.validated_data)
        body = {**ApiKeySerializer(issued.api_key).data, "key": issued.plaintext}
        # The only response that ever carries the plaintext: no cache may keep a copy.
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class TenantKeyDetailView(_TenantKeysBase):
    def get(self, request: Request, slug: str, pk: int) -> Response:
        api_key = get_object_or_404(self.get_queryset(), pk=pk)
        return Response(ApiKeySerializer(api_key).data)


class TenantKeyRevokeView(_TenantKeysBase):
    # Revoking changes an existing key: not the add_apikey a POST would need by default.
    method_permissions = {"POST": ["tenants.change_apikey"]}

    def post(self, request: Request, slug: str, pk: int) -> Response:
        api_key: ApiKey = get_object_or_404(self.get_queryset(), pk=pk)
        api_key_revoke(api_key=api_key)
        return Response(ApiKeySerializer(api_key).data)
