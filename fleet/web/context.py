"""What every page's template needs: the user's role flags and the navigation."""

from django.http import HttpRequest

NAV = (
    ("dashboard", "Dashboard", "home"),
    ("cameras", "Cameras", "devices:list"),
    ("events", "Events", "telemetry:events"),
    ("alerts", "Alerts", "telemetry:alerts"),
    ("ota", "Updates", "ota:deployments"),
)


def ui(request: HttpRequest) -> dict:
    """Role flags for hiding what a role may not do; the server checks again on every request."""
    user = getattr(request, "user", None)
    authenticated = bool(user and user.is_authenticated)
    return {
        "nav": NAV,
        "can_operate": authenticated and user.has_role("operator"),
        "can_admin": authenticated and user.has_role("admin"),
    }
