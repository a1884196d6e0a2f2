from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.api import serializers as s
from accounts.models import ApiToken, Role, User
from accounts.permissions import PasswordBacked, RolePermission
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
    """Every user manages their own tokens; admins see and revoke everyone's. DELETE revokes.

    Creating one needs a login session (a token cannot mint tokens); scripts get their first
    token from POST /api/v1/auth/token/ with the user's password, or `manage.py token_create`.
    """

    serializer_class = s.ApiTokenSerializer
    permission_classes = [RolePermission, PasswordBacked]
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
        return Response(_issued(issued), status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.token_revoke(actor=Actor.from_request(self.request), token=instance)


def _issued(issued: services.IssuedToken) -> dict:
    return s.ApiTokenSerializer(issued.token).data | {"key": issued.key}


class TokenObtainView(APIView):
    """A new API token for a username and password (the login flow for scripts). Throttled."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "login"

    @extend_schema(request=s.TokenObtainSerializer, responses={201: s.ApiTokenIssuedSerializer}, auth=[])
    def post(self, request):
        serializer = s.TokenObtainSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.token_obtain(
            **serializer.validated_data, source=request.META.get("REMOTE_ADDR", "")
        )
        return Response(_issued(issued), status=status.HTTP_201_CREATED)
