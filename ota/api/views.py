"""OTA API: thin views over ota.services and ota.selectors."""

from django.conf import settings
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from accounts.models import Role
from fleet import storage
from fleet.api.parsers import StrictJSONParser
from fleet.api.viewsets import ServiceModelViewSet
from fleet.audit import Actor
from ota import selectors, services
from ota.api import serializers as s
from ota.errors import OtaError
from ota.filters import (
    DeploymentFilterSet,
    DeviceUpdateFilterSet,
    ModelArtifactFilterSet,
    ReleaseFilterSet,
    SigningKeyFilterSet,
)
from ota.models import DeviceUpdate, KeyListDocument, ModelArtifact, Release, SigningKey


def _not_editable(**kwargs):
    raise OtaError("immutable", "This object cannot be edited; use its actions.", status=405)


class ModelArtifactViewSet(ServiceModelViewSet):
    """ONNX model files. Upload with multipart/form-data (the only endpoint that takes large bodies)."""

    queryset = ModelArtifact.objects.prefetch_related("hardware_models")
    serializer_class = s.ModelArtifactSerializer
    filterset_class = ModelArtifactFilterSet
    parser_classes = [MultiPartParser, StrictJSONParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    services = (_not_editable, services.artifact_update, services.artifact_delete)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        if "hardware_models" in data:
            data["hardware_models"] = s.ArtifactUploadSerializer().validate_hardware_models(
                data["hardware_models"]
            )
        serializer.instance = services.artifact_update(
            instance=serializer.instance, actor=self.actor(), data=data
        )

    @extend_schema(
        request={"multipart/form-data": s.ArtifactUploadSerializer},
        responses={201: s.ModelArtifactSerializer},
    )
    def create(self, request, *args, **kwargs):
        # Refuse an oversize upload before Django spools it to disk.
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.OTA_ARTIFACT_MAX_BYTES:
            raise OtaError(
                "too_large", f"Artifacts are at most {settings.OTA_ARTIFACT_MAX_BYTES} bytes.", status=413
            )
        upload = s.ArtifactUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data = dict(upload.validated_data)
        artifact = services.artifact_create(actor=self.actor(), **data)
        fresh = self.get_queryset().get(pk=artifact.pk)
        return Response(s.ModelArtifactSerializer(fresh).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={302: None})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """The artifact bytes, through a redirect to a short-lived object-store URL."""
        artifact = self.get_object()
        return HttpResponseRedirect(storage.presigned_get(artifact.storage_key, 300))


class ReleaseViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Signed release manifests. Created from an artifact; never edited (a change is a new serial)."""

    queryset = Release.objects.select_related("track", "signed_by").prefetch_related("hardware_models")
    serializer_class = s.ReleaseSerializer
    filterset_class = ReleaseFilterSet

    @extend_schema(request=s.ReleaseCreateSerializer, responses={201: s.ReleaseSerializer})
    def create(self, request, *args, **kwargs):
        body = s.ReleaseCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        release = services.release_create(actor=Actor.from_request(request), **body.validated_data)
        return Response(s.ReleaseSerializer(self.get_queryset().get(pk=release.pk)).data, status=201)

    def perform_destroy(self, instance):
        services.release_delete(actor=Actor.from_request(self.request), instance=instance)


class DeploymentViewSet(ServiceModelViewSet):
    """Rollouts: create a draft, then start, pause, resume, abort (optionally rolling back) or roll back."""

    queryset = selectors.deployment_queryset()
    serializer_class = s.DeploymentSerializer
    filterset_class = DeploymentFilterSet
    http_method_names = ["get", "post", "delete", "head", "options"]
    services = (services.deployment_create, _not_editable, services.deployment_delete)

    def _act(self, service, **kwargs):
        deployment = service(actor=self.actor(), deployment=self.get_object(), **kwargs)
        return Response(s.DeploymentSerializer(self.get_queryset().get(pk=deployment.pk)).data)

    @extend_schema(request=None, responses=s.DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """draft -> running (or scheduled, when scheduled_at is in the future)."""
        return self._act(services.deployment_start)

    @extend_schema(request=s.PauseSerializer, responses=s.DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        body = s.PauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(services.deployment_pause, **body.validated_data)

    @extend_schema(request=None, responses=s.DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(services.deployment_resume)

    @extend_schema(request=s.AbortSerializer, responses=s.DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None):
        """Cancel unfinished devices; with rollback=true, return devices that took it to their previous model."""
        body = s.AbortSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(services.deployment_abort, **body.validated_data)

    @extend_schema(request=None, responses=s.DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Ship each device that took this release its previous release again, under a new, higher serial."""
        return self._act(services.deployment_rollback)

    @extend_schema(responses=s.ProgressSerializer)
    @action(detail=True, methods=["get"])
    def progress(self, request, pk=None):
        """Counts by state for the deployment and each wave, failure rate, ETA. One query: poll freely."""
        return Response(selectors.deployment_progress(deployment=self.get_object()))

    @extend_schema(responses=s.DeviceUpdateSerializer(many=True), filters=True)
    @action(detail=True, methods=["get"])
    def updates(self, request, pk=None):
        """Per-device state of this deployment (filter by state, wave, device)."""
        # Not self.get_object(): the query parameters here filter updates, not deployments.
        deployment = get_object_or_404(self.get_queryset(), pk=pk)
        queryset = DeviceUpdate.objects.filter(deployment=deployment).select_related("device")
        queryset = DeviceUpdateFilterSet(request.query_params, queryset=queryset).qs
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.DeviceUpdateSerializer(page, many=True).data)


class SigningKeyViewSet(viewsets.ReadOnlyModelViewSet):
    """OTA signing keys (public halves). Admins only; keys change through `manage.py ota_keys`."""

    queryset = SigningKey.objects.all()
    serializer_class = s.SigningKeySerializer
    filterset_class = SigningKeyFilterSet
    read_role = Role.ADMIN
    write_role = Role.ADMIN


class KeyListViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Root-signed key lists devices trust. Admins may publish one signed offline (verified first)."""

    queryset = KeyListDocument.objects.all()
    serializer_class = s.KeyListSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=s.KeyListPublishSerializer, responses={201: s.KeyListSerializer})
    def create(self, request, *args, **kwargs):
        body = s.KeyListPublishSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        doc = services.keylist_publish(
            actor=Actor.from_request(request), document=body.validated_data["document"]
        )
        return Response(s.KeyListSerializer(doc).data, status=201)

    @action(detail=False, methods=["get"])
    def current(self, request):
        """The key list in force (the highest version)."""
        doc = KeyListDocument.objects.order_by("-version").first()
        if doc is None:
            raise OtaError("no_keylist", "No key list yet: run `manage.py ota_keys init`.", status=404)
        return Response(s.KeyListSerializer(doc).data)
