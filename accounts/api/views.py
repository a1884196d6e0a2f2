from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import services
from accounts.api import serializers as s
from accounts.models import ApiToken, Role, User
from fleet.api.viewsets import PK_REGEX, ServiceModelViewSet
from fleet.audit import Actor


class UserViewSet(ServiceModelViewSet):
    """Users and their roles: admins only. Users are deactivated, never deleted."""

    queryset = User.objects.order_by("id")
    serializer_class = s.UserSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    services = (None, services.user_update, services.user_deactivate)

    @extend_schema(request=s.UserCreateSerializer, responses={201: s.UserSerializer})
    def create(self, request):
        serializer = s.UserCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_create(actor=self.actor(), **serializer.validated_data)
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.UserSerializer)
    @action(detail=False, methods=["get"], read_role=Role.VIEWER)
    def me(self, request):
        """The user behind this request, with its role."""
        return Response(s.UserSerializer(request.user).data)


class ApiTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Every user manages their own tokens; admins see and revoke everyone's. DELETE revokes."""

    serializer_class = s.ApiTokenSerializer
    lookup_value_regex = PK_REGEX
    read_role = Role.VIEWER
    write_role = Role.VIEWER

    queryset = ApiToken.objects.select_related("user")

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        if not self.request.user.has_role(Role.ADMIN):
            queryset = queryset.filter(user=self.request.user)
        return queryset

    @extend_schema(request=s.ApiTokenCreateSerializer, responses={201: s.ApiTokenIssuedSerializer})
    def create(self, request):
        serializer = s.ApiTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.token_create(
            actor=Actor.from_request(request), user=request.user, **serializer.validated_data
        )
        data = s.ApiTokenSerializer(issued.token).data | {"key": issued.key}
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.token_revoke(actor=Actor.from_request(self.request), token=instance)
