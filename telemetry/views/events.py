"""Events review across the fleet (grid, timeline, filters, jump to a time, mark reviewed), one event,
and the alerts inbox (acknowledge one or many)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View
from django_filters.views import FilterView
from django_tables2.paginators import LazyPaginator

from accounts.views import RoleRequired
from fleet.errors import FleetError
from fleet.web.forms import choice_filter, compact_filters, time_filters
from fleet.web.views import FilteredTableView, refused, ui_actor
from telemetry.commands.services import command_send
from telemetry.events.alerts import alerts_acknowledge
from telemetry.events.filters import AlertFilterSet, EventFilterSet
from telemetry.events.services import events_mark_reviewed
from telemetry.models.events import Alert, Event, WebhookState
from telemetry.tables import AlertTable
from telemetry.views.camera import media_urls, with_media

PAGE = 48


class EventReview(RoleRequired, FilterView):
    """Every camera's events, newest first, as thumbnails on a grid and ticks on a timeline."""

    filterset_class = EventFilterSet
    template_name = "telemetry/events.html"
    paginate_by = PAGE
    paginator_class = LazyPaginator

    def get_queryset(self):
        return with_media(Event.objects.order_by("-start", "-id"))

    def get_filterset(self, filterset_class):
        filterset = super().get_filterset(filterset_class)
        form = filterset.form
        compact_filters(form, ("site", "group"))
        time_filters(form)
        choice_filter(form, "reviewed", [("", "Any"), ("false", "To review"), ("true", "Reviewed")])
        return filterset

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        page = list(context["object_list"])
        items = media_urls(page)
        if page:
            newest, oldest = page[0].start, page[-1].start
            span = max((newest - oldest).total_seconds(), 1.0)
            for it in items:  # 0 = oldest on the left, 1 = newest on the right
                it["at"] = round((it["event"].start - oldest).total_seconds() / span, 4)
            context.update(oldest=oldest, newest=newest)
        query = self.request.GET.copy()
        query.pop("page", None)
        context.update(items=items, section="events", query=query.urlencode())
        return context


class EventReviewMark(RoleRequired, View):
    """Mark the ticked events (or one) reviewed, or back to unreviewed."""

    def post(self, request):
        pks = [int(p) for p in request.POST.getlist("event") if p.isdigit()]
        back = request.POST.get("back") or reverse("telemetry:events")
        if not pks:
            messages.error(request, "Tick at least one event.")
            return redirect(back)
        reviewed = request.POST.get("reviewed", "1") == "1"
        n = events_mark_reviewed(actor=ui_actor(request), event_pks=pks, reviewed=reviewed)
        messages.success(
            request, f"{n} event{'s' if n != 1 else ''} marked {'reviewed' if reviewed else 'unreviewed'}."
        )
        return redirect(back)


class EventPage(RoleRequired, View):
    def get(self, request, pk: int):
        event = get_object_or_404(with_media(Event.objects.all()), pk=pk)
        item = media_urls([event])[0]
        clip_requested = (
            event.device.commands.filter(name="upload_clip", args__event_id=event.event_id)
            .order_by("-id")
            .first()
        )
        alerts = Alert.objects.filter(event=event).select_related("rule", "acknowledged_by")
        return render(
            request,
            "telemetry/event.html",
            {
                "item": item,
                "event": event,
                "section": "events",
                "clip_command": clip_requested,
                "alerts": alerts,
                "tz": event.device.site.timezone if event.device.site_id else "UTC",
            },
        )

    def post(self, request, pk: int):
        """Ask the camera for this event's clip (upload_clip)."""
        event = get_object_or_404(Event.objects.select_related("device"), pk=pk)
        back = reverse("telemetry:event", args=[pk])
        try:
            command_send(
                actor=ui_actor(request),
                device=event.device,
                name="upload_clip",
                args={"event_id": event.event_id},
            )
        except FleetError as exc:
            return refused(request, exc, back)
        messages.success(request, "Clip requested: it shows here once the camera has uploaded it.")
        return redirect(back)


class AlertInbox(RoleRequired, FilteredTableView):
    filterset_class = AlertFilterSet
    table_class = AlertTable
    template_name = "telemetry/alerts.html"
    paginator_class = LazyPaginator
    section = "alerts"
    title = "Alerts"

    def get_queryset(self):
        return Alert.objects.select_related("rule", "event", "device__site", "acknowledged_by")

    def get_filterset(self, filterset_class):
        filterset = super().get_filterset(filterset_class)
        compact_filters(filterset.form, ("rule", "site"))
        time_filters(filterset.form)
        choice_filter(
            filterset.form, "acknowledged", [("", "Any"), ("false", "Open"), ("true", "Acknowledged")]
        )
        choice_filter(filterset.form, "webhook_state", [("", "Any"), *WebhookState.choices])
        return filterset

    def get_filterset_kwargs(self, filterset_class):
        kwargs = super().get_filterset_kwargs(filterset_class)
        if not self.request.GET:  # the inbox opens on what still needs a look
            kwargs["data"] = {"acknowledged": "false"}
        return kwargs


class AlertAcknowledge(RoleRequired, View):
    def post(self, request):
        pks = [int(p) for p in request.POST.getlist("alert") if p.isdigit()]
        back = request.POST.get("back") or reverse("telemetry:alerts")
        if not pks:
            messages.error(request, "Tick at least one alert.")
            return redirect(back)
        n = alerts_acknowledge(actor=ui_actor(request), alert_pks=pks)
        messages.success(request, f"{n} alert{'s' if n != 1 else ''} acknowledged.")
        return redirect(back)
