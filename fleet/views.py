from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from devices.models import Device, Site


def home(request: HttpRequest) -> HttpResponse:
    """Landing page until the operator UI lands: where the API, admin and health endpoints are."""
    return render(
        request, "home.html", {"device_count": Device.objects.count(), "site_count": Site.objects.count()}
    )
