"""Pages of fleet/ itself: the audit log, and error pages that answer in HTML or JSON as asked."""

import django_tables2 as tables
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import format_html

from fleet.api.audit import AuditFilterSet
from fleet.api.errors import error_body
from fleet.models import AuditEntry, AuditSource
from fleet.web.forms import choice_filter, time_filters
from fleet.web.tables import TimeColumn
from fleet.web.views import FilteredTableView


class AuditTable(tables.Table):
    created_at = TimeColumn(verbose_name="When")
    actor_label = tables.Column(verbose_name="Who")
    object = tables.Column(empty_values=(), orderable=False, verbose_name="Object")
    change = tables.Column(empty_values=(), orderable=False)

    class Meta:
        model = AuditEntry
        fields = ("created_at", "actor_label", "source", "action", "object", "change")
        order_by = ("-created_at",)
        empty_text = "No audit entries match."

    def render_object(self, record):
        return format_html(
            "{}:{} <span class='muted small'>{}</span>",
            record.object_type,
            record.object_id,
            record.object_repr,
        )

    def render_change(self, record):
        after = record.after or {}
        if record.before:
            changed = sorted(k for k in after if record.before.get(k) != after.get(k))
            return ", ".join(changed[:6]) or "—"
        return ", ".join(sorted(after)[:6]) or "—"


def audit_view():
    """Built lazily: fleet/ may not import accounts at module level (the role check lives there)."""
    from accounts.views import RoleRequired

    class AuditLog(RoleRequired, FilteredTableView):
        filterset_class = AuditFilterSet
        table_class = AuditTable
        title = "Audit log"

        def get_queryset(self):
            return AuditEntry.objects.all()

        def get_filterset(self, filterset_class):
            filterset = super().get_filterset(filterset_class)
            time_filters(filterset.form)
            choice_filter(filterset.form, "source", [("", "Any"), *AuditSource.choices])
            return filterset

    return AuditLog.as_view()


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/files/")) or "application/json" in request.headers.get(
        "Accept", ""
    )


def error_404(request, exception=None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return render(
        request,
        "error.html",
        {"title": "Not found", "message": "There is nothing at this address."},
        status=404,
    )


def error_403(request, exception=None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(
            error_body("permission_denied", "Your role does not allow this action."), status=403
        )
    return render(
        request,
        "error.html",
        {"title": "Not allowed", "message": "Your role does not allow this action."},
        status=403,
    )


def error_500(request) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    return render(
        request,
        "error.html",
        {"title": "Something went wrong", "message": "The error is logged. Try again in a moment."},
        status=500,
    )


def csrf_failure(request, reason: str = "") -> HttpResponse:
    return render(
        request,
        "error.html",
        {
            "title": "Refused",
            "message": "The form was stale or forged (CSRF check). Reload the page and try again.",
        },
        status=403,
    )
