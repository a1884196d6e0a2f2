"""OTA pages: model artifacts (upload with progress), releases (sign, manifest, verification),
deployments (Active / Scheduled / Finished, a create form with a live match count, a live page
with per-wave progress and the operator actions). Views call ota.selectors and ota.services."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views import View
from django_tables2 import RequestConfig
from django_tables2.paginators import LazyPaginator

from accounts.views import RoleRequired
from fleet.errors import FleetError
from fleet.web.forms import apply_error, compact_filters
from fleet.web.views import FilteredTableView, refused, ui_actor
from ota import selectors, services
from ota.filters import DeploymentFilterSet, DeviceUpdateFilterSet, ModelArtifactFilterSet, ReleaseFilterSet
from ota.forms import ArtifactUploadForm, DeploymentForm, ReleaseForm
from ota.models import Deployment, DeviceUpdate, ModelArtifact, Release
from ota.tables import ArtifactTable, DeploymentTable, DeviceUpdateTable, ReleaseTable

# Mender's three lists, plus drafts (a deployment created but not started yet).
TABS = (
    ("active", "Active", ["running", "paused"]),
    ("scheduled", "Scheduled and drafts", ["scheduled", "draft"]),
    ("finished", "Finished", ["completed", "aborted", "rolled_back"]),
)


class ArtifactList(RoleRequired, FilteredTableView):
    filterset_class = ModelArtifactFilterSet
    table_class = ArtifactTable
    title = "Model artifacts"
    create_url = "ota:artifact-upload"
    create_label = "Upload model"
    section = "ota"

    def get_queryset(self):
        return ModelArtifact.objects.prefetch_related("hardware_models")


class ArtifactUpload(RoleRequired, View):
    template = "ota/artifact_upload.html"

    def get(self, request):
        return render(request, self.template, {"form": ArtifactUploadForm(), "section": "ota"})

    def post(self, request):
        form = ArtifactUploadForm(request.POST, request.FILES)
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.OTA_ARTIFACT_MAX_BYTES:
            form.add_error("file", f"Artifacts are at most {settings.OTA_ARTIFACT_MAX_BYTES:,} bytes.")
        elif form.is_valid():
            data = form.cleaned_data
            try:
                artifact = services.artifact_create(
                    actor=ui_actor(request),
                    name=data["name"],
                    version=data["version"],
                    file=data["file"],
                    hardware_models=list(data["hardware_models"]),
                    labels=data["labels"],
                    notes=data["notes"],
                )
            except FleetError as exc:
                apply_error(form, exc)
            else:
                messages.success(
                    request,
                    f"Artifact {artifact} uploaded ({artifact.size:,} bytes, sha256 checked). Sign a release of it next.",
                )
                url = reverse("ota:release-create") + f"?artifact={artifact.pk}"
                if request.headers.get("X-Requested-With") == "XMLHttpRequest":  # the progress-bar upload
                    response = HttpResponse(status=204)
                    response["X-Redirect"] = url
                    return response
                return redirect(url)
        return render(request, self.template, {"form": form, "section": "ota"})


class ReleaseList(RoleRequired, FilteredTableView):
    filterset_class = ReleaseFilterSet
    table_class = ReleaseTable
    title = "Releases"
    create_url = "ota:release-create"
    create_label = "Sign a release"
    section = "ota"

    def get_queryset(self):
        return Release.objects.select_related("track").prefetch_related("hardware_models")


class ReleaseCreate(RoleRequired, View):
    def _render(self, request, form):
        return render(request, "form.html", {"form": form, "title": "Sign a release", "submit": "Sign release",
                                             "cancel": reverse("ota:releases"), "section": "ota",
                                             "intro": "The manifest is signed with the active release key and checked as a camera would before anyone gets it."})  # fmt: skip

    def get(self, request):
        initial = {}
        artifact = ModelArtifact.objects.filter(pk=request.GET.get("artifact") or 0).first()
        if artifact is not None:
            initial = {
                "artifact": artifact,
                "hardware_models": list(artifact.hardware_models.all()),
                "version": artifact.version,
            }
        return self._render(request, ReleaseForm(initial=initial))

    def post(self, request):
        form = ReleaseForm(request.POST)
        if form.is_valid():
            data = dict(form.cleaned_data)
            data["hardware_models"] = [hw.name for hw in data["hardware_models"]]
            builds = list(data.pop("builds"))
            try:
                data["artifacts"] = services.builds_by_hardware(builds, data["hardware_models"])
                release = services.release_create(actor=ui_actor(request), **data)
            except FleetError as exc:
                apply_error(form, exc)
            else:
                messages.success(request, f"Release {release} signed.")
                return redirect("ota:release", pk=release.pk)
        return self._render(request, form)


class ReleasePage(RoleRequired, View):
    def get(self, request, pk: int):
        release = get_object_or_404(Release.objects.select_related("track", "artifact", "signed_by"), pk=pk)
        ok, detail = selectors.release_verification(release=release)
        deployments = release.deployments.order_by("-id")[:20]
        return render(request, "ota/release.html", {"release": release, "verified": ok, "verification": detail,
                                                    "deployments": deployments, "section": "ota"})  # fmt: skip


class DeploymentList(RoleRequired, FilteredTableView):
    filterset_class = DeploymentFilterSet
    table_class = DeploymentTable
    template_name = "ota/deployments.html"
    title = "Deployments"
    section = "ota"

    def get_queryset(self):
        return selectors.deployment_queryset()

    def get_filterset_kwargs(self, filterset_class):
        kwargs = super().get_filterset_kwargs(filterset_class)
        tab = self.request.GET.get("tab", "active" if not self.request.GET else "")
        states = dict((k, s) for k, _, s in TABS).get(tab)
        if states:
            data = self.request.GET.copy()
            data.setlist("state", states)
            kwargs["data"] = data
        self.tab = tab
        return kwargs

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"tabs": TABS, "tab": self.tab}


class DeploymentCreate(RoleRequired, View):
    def _render(self, request, form):
        return render(request, "ota/deployment_create.html", {"form": form, "section": "ota"})

    def get(self, request):
        initial = {}
        if request.GET.get("release"):
            initial["release"] = Release.objects.filter(pk=request.GET["release"]).first()
        return self._render(request, DeploymentForm(initial=initial))

    def post(self, request):
        form = DeploymentForm(request.POST)
        if form.is_valid():
            try:
                deployment = services.deployment_create(actor=ui_actor(request), data=form.service_data())
                if form.cleaned_data["start_now"]:
                    deployment = services.deployment_start(actor=ui_actor(request), deployment=deployment)
            except FleetError as exc:
                apply_error(form, exc)
            else:
                messages.success(request, f"Deployment {deployment.name} created ({deployment.state}).")
                return redirect("ota:deployment", pk=deployment.pk)
        return self._render(request, form)


class DeploymentMatches(RoleRequired, View):
    """The live count of cameras the create form's targets match (htmx, on every change)."""

    def get(self, request):
        form = DeploymentForm(request.GET)
        form.is_valid()  # only the target fields matter here: their cleaned values are kept either way
        targets = form.targets()
        if not targets:
            return HttpResponse('<span class="muted" data-matches="0">Pick at least one target.</span>')
        try:
            count = selectors.deployment_match_count(targets=targets)
        except FleetError as exc:
            return HttpResponse(format_html('<span class="error">{}</span>', exc.message))
        return HttpResponse(f'<span class="live-count" data-matches="{count}">{count} camera{"s" if count != 1 else ""} match</span>'
                            ' <span class="muted">(inactive or incompatible ones are left out when it is created)</span>')  # fmt: skip


def _deployment(pk: int) -> Deployment:
    return get_object_or_404(selectors.deployment_queryset(), pk=pk)


def _live_context(deployment: Deployment) -> dict:
    progress = selectors.deployment_progress(deployment=deployment)
    return {
        "d": deployment,
        "p": progress,
        "failing": selectors.failing_updates(deployment=deployment, limit=20),
        "pause_at": deployment.pause_failure_rate,
        "abort_at": deployment.abort_failure_rate,
    }


def _cameras(request, deployment: Deployment) -> dict:
    """The deployment's cameras, filtered with the API's DeviceUpdateFilterSet, one page."""
    queryset = (
        DeviceUpdate.objects.filter(deployment=deployment).select_related("device").order_by("wave", "id")
    )
    updates = DeviceUpdateFilterSet(request.GET, queryset=queryset)
    compact_filters(updates.form, ("state",))
    table = DeviceUpdateTable(updates.qs)
    RequestConfig(request, paginate={"per_page": 50, "paginator_class": LazyPaginator}).configure(table)
    return {"table": table, "updates_filter": updates}


class DeploymentPage(RoleRequired, View):
    def get(self, request, pk: int):
        deployment = _deployment(pk)
        context = {**_live_context(deployment), **_cameras(request, deployment), "section": "ota"}
        context["targets"] = selectors.targets_described(targets=deployment.targets)
        return render(request, "ota/deployment.html", context)

    def post(self, request, pk: int):
        deployment = _deployment(pk)
        back = reverse("ota:deployment", args=[pk])
        action = request.POST.get("action", "")
        actor = ui_actor(request)
        try:
            if action == "start":
                services.deployment_start(actor=actor, deployment=deployment)
            elif action == "pause":
                services.deployment_pause(
                    actor=actor, deployment=deployment, reason=request.POST.get("reason", "")
                )
            elif action == "resume":
                services.deployment_resume(actor=actor, deployment=deployment)
            elif action == "abort":
                services.deployment_abort(
                    actor=actor, deployment=deployment, reason=request.POST.get("reason", "")
                )
            elif action == "rollback":
                services.deployment_rollback(actor=actor, deployment=deployment)
            else:
                messages.error(request, "Unknown action.")
                return redirect(back)
        except FleetError as exc:
            return refused(request, exc, back)
        labels = {
            "start": "started",
            "pause": "paused",
            "resume": "resumed",
            "abort": "aborted",
            "rollback": "rolled back",
        }
        messages.success(request, f"Deployment {deployment.name} {labels[action]}.")
        return redirect(back)


class DeploymentLive(RoleRequired, View):
    """The live parts of the deployment page (htmx polls them): progress, or the cameras table."""

    def get(self, request, pk: int, part: str = "progress"):
        deployment = _deployment(pk)
        if part == "cameras":
            return render(request, "ota/_deployment_cameras.html", _cameras(request, deployment))
        return render(request, "ota/_deployment_live.html", _live_context(deployment))
