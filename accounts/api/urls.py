from django.urls import path
from rest_framework.routers import DefaultRouter

from accounts.api import views

router = DefaultRouter(trailing_slash=True)
router.register("users", views.UserViewSet)
router.register("tokens", views.ApiTokenViewSet, basename="apitoken")

urlpatterns = [path("auth/token/", views.TokenObtainView.as_view(), name="token-obtain"), *router.urls]
