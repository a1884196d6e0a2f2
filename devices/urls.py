from django.urls import path

from devices import views

app_name = "devices"

urlpatterns = [
    path("cameras/", views.CameraList.as_view(), name="list"),
    path("cameras/bulk/", views.CameraBulk.as_view(), name="bulk"),
    path("cameras/columns/", views.CameraColumns.as_view(), name="columns"),
    path("cameras/save-filter/", views.SaveFilter.as_view(), name="save-filter"),
    path("sites/", views.SiteList.as_view(), name="sites"),
    path("sites/new/", views.SiteEdit.as_view(), name="site-create"),
    path("sites/<int:pk>/", views.SiteEdit.as_view(), name="site"),
    path("groups/", views.GroupList.as_view(), name="groups"),
    path("groups/new/", views.GroupEdit.as_view(), name="group-create"),
    path("groups/<int:pk>/", views.GroupEdit.as_view(), name="group"),
    path("saved-filters/", views.SavedFilterList.as_view(), name="saved-filters"),
    path("saved-filters/<int:pk>/", views.SavedFilterEdit.as_view(), name="saved-filter"),
    path("enrollment-tokens/", views.EnrollmentTokens.as_view(), name="enrollment-tokens"),
]
