"""Device identity API: POST /enroll/ (the token is the credential), enrollment tokens (admin),
a device's certificates, and POST /devices/{device_id}/revoke/."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import re_path
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.exceptions import APIException, ParseError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from accounts.models import Role
from devices import identity_selectors, revocation
from devices.enrollment import (
    EnrollmentError,
    device_enroll,
    enrollment_refused,
    enrollment_token_create,
    enrollment_token_revoke,
)
from devices.models import Device, DeviceGroup, HardwareModel, Site
from devices.models_identity import DeviceCertificate, EnrollmentToken
from fleet import storage
from fleet.api.serializers import StrictSerializer
from fleet.api.viewsets import PK_REGEX
from fleet.audit import Actor
from protocol.topics import DEVICE_ID_PATTERN

# -- serializers -------------------------------------------------------------------------------------


class EnrollRequestSerializer(StrictSerializer):
    token = serializers.CharField(max_length=200)
    csr_pem = serializers.CharField(max_length=16 * 1024, trim_whitespace=False)
    serial = serializers.CharField(max_length=100)
    hardware_model = serializers.CharField(max_length=100)
    agent_version = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")


class MqttEndpointSerializer(serializers.Serializer):
    host = serializers.CharField()
    port = serializers.IntegerField()
    tls = serializers.BooleanField()


class EnrollResponseSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    certificate_pem = serializers.CharField()
    ca_pem = serializers.CharField()
    mqtt = MqttEndpointSerializer()
    api_url = serializers.CharField()
    download_origins = serializers.ListField(
        child=serializers.CharField(), help_text="The only origins the device may fetch OTA artifacts from."
    )


class EnrollmentTokenSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    tags = serializers.SerializerMethodField()

    class Meta:
        model = EnrollmentToken
        fields = [
            "id",
            "name",
            "prefix",
            "site",
            "hardware_model",
            "groups",
            "tags",
            "max_uses",
            "uses",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "created_at",
            "status",
        ]
        read_only_fields = fields

    def get_tags(self, obj) -> list[str]:
        return sorted(t.name for t in obj.tags.all())


class EnrollmentTokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    max_uses = serializers.IntegerField(min_value=1, max_value=100_000, default=1)
    expires_in_hours = serializers.IntegerField(min_value=1, max_value=24 * 366, required=False)
    site = serializers.PrimaryKeyRelatedField(queryset=Site.objects.all(), required=False, allow_null=True)
    hardware_model = serializers.PrimaryKeyRelatedField(
        queryset=HardwareModel.objects.all(), required=False, allow_null=True
    )
    groups = serializers.PrimaryKeyRelatedField(
        queryset=DeviceGroup.objects.all(), many=True, required=False, default=list
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=50), max_length=100, required=False, default=list
    )


class EnrollmentTokenIssuedSerializer(EnrollmentTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; only its hash is stored.")

    class Meta(EnrollmentTokenSerializer.Meta):
        fields = [*EnrollmentTokenSerializer.Meta.fields, "key"]
        read_only_fields = fields


class DeviceCertificateSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = DeviceCertificate
        fields = [
            "id",
            "serial",
            "fingerprint",
            "not_before",
            "not_after",
            "issued_at",
            "revoked_at",
            "reason",
            "broker_applied_at",
            "status",
        ]
        read_only_fields = fields

    def get_status(self, obj) -> str:
        from django.utils import timezone

        if obj.revoked_at is not None:
            return "revoked"
        return "expired" if obj.not_after <= timezone.now() else "valid"


class RevokeSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class RevokeResultSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    revoked = serializers.IntegerField(help_text="Certificates revoked by this call.")


# -- views ------------------------------------------------------------------------------------------


def _client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "")[:45]


class EnrollView(APIView):
    """The one HTTPS call a new camera makes: enrollment token + CSR -> device id and certificate."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "enroll"

    @extend_schema(request=EnrollRequestSerializer, responses={201: EnrollResponseSerializer}, auth=[])
    def post(self, request):
        source = _client_ip(request)
        length = len(request.body)  # Django caps the read at DATA_UPLOAD_MAX_MEMORY_SIZE (413 beyond)
        if length > settings.ENROLL_MAX_BODY_BYTES:
            enrollment_refused(code="too_large", source=source, detail=f"{length} bytes")
            raise EnrollmentError(
                "too_large",
                f"The body is {length} bytes, at most {settings.ENROLL_MAX_BODY_BYTES}.",
                status=413,
            )
        try:
            serializer = EnrollRequestSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
        except APIException as exc:  # unparseable or invalid: refused before any token check
            data = getattr(request, "_full_data", None)
            serial = data.get("serial") if isinstance(data, dict) else ""
            code = exc.get_codes() if isinstance(exc, ParseError) else "validation_error"
            enrollment_refused(
                code=str(code), serial=str(serial or ""), source=source, detail=str(exc.detail)
            )
            raise
        result = device_enroll(**serializer.validated_data, source=source)
        body = {
            "device_id": result.device.device_id,
            "certificate_pem": result.certificate_pem,
            "ca_pem": result.ca_pem,
            "mqtt": {"host": settings.MQTT_DEVICE_HOST, "port": settings.MQTT_DEVICE_PORT, "tls": True},
            "api_url": settings.PUBLIC_URL,
            # The only places the device will fetch OTA artifacts from (protocol.download).
            "download_origins": storage.download_origins(),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class EnrollmentTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Enrollment tokens: admins only. The key is in the create answer only. DELETE revokes."""

    queryset = identity_selectors.enrollment_token_list()
    serializer_class = EnrollmentTokenSerializer
    lookup_value_regex = PK_REGEX
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=EnrollmentTokenCreateSerializer, responses={201: EnrollmentTokenIssuedSerializer})
    def create(self, request):
        serializer = EnrollmentTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = enrollment_token_create(actor=Actor.from_request(request), **serializer.validated_data)
        token = identity_selectors.enrollment_token_list().get(pk=issued.token.pk)
        data = EnrollmentTokenSerializer(token).data | {"key": issued.key}
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        enrollment_token_revoke(actor=Actor.from_request(self.request), token=instance)


class DeviceCertificateList(generics.ListAPIView):
    """Every certificate the fleet CA issued to this device, newest first."""

    serializer_class = DeviceCertificateSerializer
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DeviceCertificate.objects.none()
        device = get_object_or_404(Device, device_id=self.kwargs["device_id"])
        return identity_selectors.device_certificates(device=device)


class DeviceRevokeView(APIView):
    """Revoke every certificate of the device: disconnected within seconds, refused until it re-enrolls."""

    write_role = Role.OPERATOR

    @extend_schema(request=RevokeSerializer, responses=RevokeResultSerializer)
    def post(self, request, device_id: str):
        device = get_object_or_404(Device, device_id=device_id)
        serializer = RevokeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        count = revocation.device_revoke(
            actor=Actor.from_request(request), device=device, reason=serializer.validated_data["reason"]
        )
        return Response({"device_id": device.device_id, "revoked": count})


_DEVICE_ID = DEVICE_ID_PATTERN.strip("^$")
router = DefaultRouter(trailing_slash=True)
router.register("enrollment-tokens", EnrollmentTokenViewSet)

urlpatterns = [
    re_path(r"^enroll/$", EnrollView.as_view(), name="enroll"),
    re_path(
        rf"^devices/(?P<device_id>{_DEVICE_ID})/certificates/$",
        DeviceCertificateList.as_view(),
        name="device-certificates",
    ),
    re_path(
        rf"^devices/(?P<device_id>{_DEVICE_ID})/revoke/$", DeviceRevokeView.as_view(), name="device-revoke"
    ),
    *router.urls,
]
