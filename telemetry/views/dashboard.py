"""The dashboard: the fleet at a glance, its live parts refreshed by htmx fragments."""

from __future__ import annotations

from django.shortcuts import redirect, render
from django.views import View

from accounts.views import RoleRequired
from ota.selectors import deployments_active
from telemetry import dashboard
from telemetry.models.events import Alert
from telemetry.status.selectors import fleet_status_summary


def home(request):
    """`/`: the dashboard when signed in, the sign-in page otherwise."""
    if not request.user.is_authenticated:
        return redirect("login")
    return Dashboard.as_view()(request)


class Dashboard(RoleRequired, View):
    """The page is a frame: each block loads and refreshes itself (DashboardPart), so the first paint
    does not wait for the fleet-wide counts."""

    def get(self, request):
        return render(request, "telemetry/dashboard.html", {"section": "dashboard"})


def _summary() -> dict:
    return {"summary": fleet_status_summary()}


class DashboardPart(RoleRequired, View):
    """One live block of the dashboard (htmx polls it): counts, problems, rollouts, alerts, uplink."""

    parts = {
        "counts": lambda: _summary(),
        "problems": lambda: {"problems": dashboard.fleet_problems(limit=8)},
        "deployments": lambda: {"deployments": deployments_active(limit=8)},
        "alerts": lambda: {
            "alerts": Alert.objects.filter(acknowledged_at__isnull=True)
            .select_related("rule", "device__site", "event")
            .order_by("-id")[:8]
        },
        "uplink": lambda: {"uplink": dashboard.uplink_today(), "top": dashboard.usage_today(limit=5)},
    }

    def get(self, request, part: str):
        if part not in self.parts:
            return redirect("home")
        return render(request, f"telemetry/dashboard/{part}.html", self.parts[part]())
