from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("password/", views.PasswordChangeView.as_view(), name="password"),
    path("users/", views.UserList.as_view(), name="users"),
    path("users/new/", views.UserCreate.as_view(), name="user-create"),
    path("users/<int:pk>/", views.UserDetail.as_view(), name="user"),
    path("tokens/", views.TokenList.as_view(), name="tokens"),
]
