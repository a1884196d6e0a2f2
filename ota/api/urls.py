from rest_framework.routers import DefaultRouter

from ota.api import views

router = DefaultRouter(trailing_slash=True)
router.register("artifacts", views.ModelArtifactViewSet)
router.register("releases", views.ReleaseViewSet)
router.register("deployments", views.DeploymentViewSet)
router.register("signing-keys", views.SigningKeyViewSet)
router.register("keylists", views.KeyListViewSet)

urlpatterns = router.urls
