from rest_framework.routers import DefaultRouter

from devices.api import enroll, views

router = DefaultRouter(trailing_slash=True)
router.register("sites", views.SiteViewSet)
router.register("hardware-models", views.HardwareModelViewSet)
router.register("groups", views.DeviceGroupViewSet)
router.register("tags", views.TagViewSet)
router.register("devices", views.DeviceViewSet)
router.register("saved-filters", views.SavedFilterViewSet)

urlpatterns = router.urls + enroll.urlpatterns
