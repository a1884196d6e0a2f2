from django.urls import path

from ota import views

app_name = "ota"

urlpatterns = [
    path("artifacts/", views.ArtifactList.as_view(), name="artifacts"),
    path("artifacts/upload/", views.ArtifactUpload.as_view(), name="artifact-upload"),
    path("releases/", views.ReleaseList.as_view(), name="releases"),
    path("releases/new/", views.ReleaseCreate.as_view(), name="release-create"),
    path("releases/<int:pk>/", views.ReleasePage.as_view(), name="release"),
    path("deployments/", views.DeploymentList.as_view(), name="deployments"),
    path("deployments/new/", views.DeploymentCreate.as_view(), name="deployment-create"),
    path("deployments/matches/", views.DeploymentMatches.as_view(), name="deployment-matches"),
    path("deployments/<int:pk>/", views.DeploymentPage.as_view(), name="deployment"),
    path("deployments/<int:pk>/live/", views.DeploymentLive.as_view(), name="deployment-live"),
    path(
        "deployments/<int:pk>/live/<slug:part>/", views.DeploymentLive.as_view(), name="deployment-live-part"
    ),
]
