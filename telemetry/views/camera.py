"""A camera's page: status, identity, charts, events, commands, OTA history, config, usage, audit."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.db.models import Prefetch
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from accounts.views import RoleRequired
from devices import identity_selectors
from devices.models import Device
from devices.revocation import device_revoke
from devices.services import TRANSITIONS, device_transition
from fleet.errors import FleetError
from fleet.models import AuditEntry
from fleet.web.views import refused, ui_actor
from ota.selectors import device_update_history
from telemetry.commands.services import command_send
from telemetry.media.services import media_url
from telemetry.metrics.selectors import metric_class_series, metric_series
from telemetry.models import DeviceConfigState
from telemetry.models.commands import Command
from telemetry.models.events import Event
from telemetry.models.media import Media, MediaKind, MediaState
from telemetry.models.metrics import Resolution
from telemetry.policies.resolve import policy_for
from telemetry.policies.usage import data_usage
from telemetry.status.selectors import device_status

# Chart ranges: (label, window, resolution of the numeric metrics, bucket of the per-class maps).
RANGES = {
    "1h": ("1 hour", dt.timedelta(hours=1), Resolution.RAW, 0),
    "6h": ("6 hours", dt.timedelta(hours=6), Resolution.RAW, 60),
    "24h": ("24 hours", dt.timedelta(hours=24), Resolution.MINUTE, 300),
    "7d": ("7 days", dt.timedelta(days=7), Resolution.HOUR, 3600),
}
CHARTS = (  # key, title, [(metric, label)]
    ("cpu", "CPU", [("cpu_pct", "CPU %"), ("mem_pct", "Memory %")]),
    ("temp", "Temperature", [("temp_c", "°C")]),
    ("fps", "Frames per second", [("fps", "fps")]),
    ("latency", "Inference latency", [("inference_ms", "ms")]),
)
COMMAND_BUTTONS = (("reboot", "Reboot"), ("snapshot", "Take snapshot"))


def _device(device_id: str) -> Device:
    return get_object_or_404(
        Device.objects.select_related("site", "hardware_model", "status"), device_id=device_id
    )


def with_media(events):
    """Events with their verified snapshot and clip media (one prefetch)."""
    verified = Media.objects.filter(state=MediaState.VERIFIED).order_by("id")
    return events.select_related("device__site").prefetch_related(
        Prefetch("media", queryset=verified, to_attr="verified_media")
    )


def media_urls(events) -> list[dict]:
    """(event, snapshot URL, clip URL) for a template; URLs are short-lived and signed."""
    out = []
    for event in events:
        snap = next((m for m in event.verified_media if m.kind == MediaKind.SNAPSHOT), None)
        clip = next((m for m in event.verified_media if m.kind == MediaKind.CLIP), None)
        out.append(
            {
                "event": event,
                "snapshot": media_url(snap) if snap else None,
                "clip": media_url(clip) if clip else None,
            }
        )
    return out


class CameraPage(RoleRequired, View):
    def get(self, request, device_id: str):
        device = _device(device_id)
        policy = policy_for(device)
        usage = data_usage(device=device, days=7)
        budget = policy.daily_budget_mb * 1024 * 1024 if policy and policy.daily_budget_mb else None
        range_key = request.GET.get("range", "1h") if request.GET.get("range") in RANGES else "1h"
        context = {
            **_status_context(device),
            "section": "cameras",
            "certificates": identity_selectors.device_certificates(device=device)[:10],
            "ranges": [(k, v[0]) for k, v in RANGES.items()],
            "range": range_key,
            "charts": CHARTS,
            "updates": device_update_history(device_pk=device.pk),
            "config": DeviceConfigState.objects.filter(device=device).select_related("policy").first(),
            "policy": policy,
            "usage": usage,
            "budget": budget,
            "audit": AuditEntry.objects.filter(object_type="device", object_id=str(device.pk))[:20],
            "command_buttons": COMMAND_BUTTONS,
            "transitions": sorted(TRANSITIONS.get(device.state, ())),
        }
        return render(request, "telemetry/camera.html", context)


class CameraMetrics(RoleRequired, View):
    """uPlot-ready series for the camera's charts: {"cpu": {"x": [...], "series": [{label, values}]}, ...}."""

    def get(self, request, device_id: str):
        device = get_object_or_404(Device, device_id=device_id)
        _, window, resolution, bucket = RANGES.get(request.GET.get("range", "1h"), RANGES["1h"])
        before = timezone.now()
        after = before - window
        metrics = [m for _, _, series in CHARTS for m, _ in series]
        points, _ = metric_series(
            device=device, resolution=resolution, metrics=metrics, after=after, before=before
        )
        suffix = "" if resolution == Resolution.RAW else "_avg"
        x = [p["ts"].timestamp() for p in points]
        body: dict = {}
        for key, _, series in CHARTS:
            body[key] = {
                "x": x,
                "series": [
                    {"label": label, "values": [p.get(m + suffix) for p in points]} for m, label in series
                ],
            }
        classes = metric_class_series(device=device, after=after, before=before, bucket_s=bucket)
        for key, field in (("queue", "queue_depth"), ("bytes", "bytes_sent")):
            body[key] = {
                "x": classes["ts"],
                "series": [{"label": c, "values": v} for c, v in classes[field].items()],
            }
        return JsonResponse(body)


def _status_context(device: Device) -> dict:
    return {
        "device": device,
        "tz": device.site.timezone if device.site_id else "UTC",
        "status": device_status(device=device),
    }


class CameraStatus(RoleRequired, View):
    """The camera's status card (an htmx fragment, polled): online, last seen, versions, uptime."""

    def get(self, request, device_id: str):
        return render(request, "telemetry/_camera_status.html", _status_context(_device(device_id)))


class CameraEvents(RoleRequired, View):
    """The camera's latest events with thumbnails (an htmx fragment, polled)."""

    def get(self, request, device_id: str):
        device = get_object_or_404(Device, device_id=device_id)
        events = with_media(Event.objects.filter(device=device).order_by("-start"))[:12]
        return render(request, "telemetry/_event_grid.html", {"items": media_urls(events), "compact": True})


class CameraCommands(RoleRequired, View):
    """Commands sent to the camera and their results (fragment, polled); POST sends one."""

    def get(self, request, device_id: str):
        device = get_object_or_404(Device, device_id=device_id)
        commands = Command.objects.filter(device=device).select_related("created_by")[:10]
        return render(request, "telemetry/_commands.html", {"commands": commands, "device": device})

    def post(self, request, device_id: str):
        device = get_object_or_404(Device, device_id=device_id)
        back = reverse("telemetry:camera", args=[device_id])
        name = request.POST.get("name", "")
        args = {"event_id": request.POST.get("event_id", "")} if name == "upload_clip" else {}
        try:
            command = command_send(actor=ui_actor(request), device=device, name=name, args=args)
        except FleetError as exc:
            return refused(request, exc, request.POST.get("back") or back)
        messages.success(
            request, f"{command.name} sent to {device.name}; its result shows below when the camera answers."
        )
        return redirect(request.POST.get("back") or back)


class CameraAction(RoleRequired, View):
    """Revoke the camera's certificates, or move it along its lifecycle (quarantine, decommission...)."""

    def post(self, request, device_id: str):
        device = _device(device_id)
        back = reverse("telemetry:camera", args=[device_id])
        try:
            if request.POST.get("action") == "revoke":
                n = device_revoke(actor=ui_actor(request), device=device, reason="revoked by operator")
                messages.success(
                    request, f"{device.name} revoked: {n} certificate(s); it is cut off at the broker."
                )
            else:
                device_transition(actor=ui_actor(request), device=device, state=request.POST.get("state", ""))
                messages.success(request, f"{device.name} is now {request.POST.get('state')}.")
        except FleetError as exc:
            return refused(request, exc, back)
        return redirect(back)
