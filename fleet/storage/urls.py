"""Mounted at /files/ by fleet/urls.py: the local backend's signed object and part URLs."""

from django.urls import path

from fleet.storage import views

app_name = "storage"

urlpatterns = [
    path("o/<path:key>", views.object_get, name="object"),
    path("part/<str:upload_id>/<int:number>", views.part_put, name="part"),
]
