"""Account pages: sign in and out, password change, users and roles, API tokens.

RoleRequired is the role check every UI view uses: it runs accounts.permissions.RolePermission,
the same class the API runs, against the view's read_role / write_role.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View
from django_tables2 import SingleTableView

from accounts import services
from accounts.forms import SignInForm, TokenCreateForm, UserCreateForm, UserRoleForm
from accounts.models import ApiToken, Role, User
from accounts.permissions import RolePermission
from accounts.tables import ApiTokenTable, UserTable
from fleet.errors import FleetError
from fleet.web.forms import apply_error
from fleet.web.views import refused, ui_actor


class RoleRequired(LoginRequiredMixin):
    """Signed in, and the role RolePermission asks for: read_role for GET/HEAD, write_role otherwise."""

    read_role = Role.VIEWER
    write_role = Role.OPERATOR

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not RolePermission().has_permission(request, self):
            raise PermissionDenied(RolePermission.message)
        return super().dispatch(request, *args, **kwargs)


class SignInView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    pass


class PasswordChangeView(RoleRequired, auth_views.PasswordChangeView):
    template_name = "form.html"
    write_role = Role.VIEWER  # everyone changes their own
    extra_context = {"title": "Change your password", "submit": "Change password"}

    def form_valid(self, form):
        services.user_password_change(
            actor=ui_actor(self.request), user=self.request.user, password=form.cleaned_data["new_password1"]
        )
        update_session_auth_hash(self.request, self.request.user)
        messages.success(self.request, "Password changed.")
        return redirect("home")


class UserList(RoleRequired, SingleTableView):
    read_role = write_role = Role.ADMIN
    model = User
    table_class = UserTable
    template_name = "list.html"
    queryset = User.objects.order_by("username")
    extra_context = {"title": "Users and roles", "create_label": "Add user"}

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"create_url": reverse("accounts:user-create")}


class UserCreate(RoleRequired, View):
    read_role = write_role = Role.ADMIN

    def get(self, request):
        return render(
            request, "form.html", {"form": UserCreateForm(), "title": "Add user", "submit": "Add user"}
        )

    def post(self, request):
        form = UserCreateForm(request.POST)
        if form.is_valid():
            try:
                user = services.user_create(actor=ui_actor(request), **form.cleaned_data)
            except FleetError as exc:
                apply_error(form, exc)
            else:
                messages.success(request, f"User {user.username} added as {user.role}.")
                return redirect("accounts:users")
        return render(request, "form.html", {"form": form, "title": "Add user", "submit": "Add user"})


class UserDetail(RoleRequired, View):
    read_role = write_role = Role.ADMIN

    def get(self, request, pk: int):
        user = get_object_or_404(User, pk=pk)
        return render(
            request,
            "accounts/user.html",
            {"subject": user, "form": UserRoleForm(initial={"role": user.role})},
        )

    def post(self, request, pk: int):
        user = get_object_or_404(User, pk=pk)
        back = reverse("accounts:user", args=[pk])
        try:
            if request.POST.get("action") == "deactivate":
                services.user_deactivate(actor=ui_actor(request), instance=user)
                messages.success(request, f"{user.username} deactivated; their API tokens are revoked.")
            else:
                form = UserRoleForm(request.POST)
                if not form.is_valid():
                    return render(request, "accounts/user.html", {"subject": user, "form": form})
                services.user_update(actor=ui_actor(request), instance=user, data=form.cleaned_data)
                messages.success(request, f"{user.username} is now {user.role}.")
        except FleetError as exc:
            return refused(request, exc, back)
        return redirect(back)


class TokenList(RoleRequired, View):
    """Everyone manages their own API tokens; admins see and revoke everyone's (as in the API)."""

    write_role = Role.VIEWER

    def _tokens(self, request):
        tokens = ApiToken.objects.select_related("user")
        return tokens if request.user.has_role(Role.ADMIN) else tokens.filter(user=request.user)

    def _page(self, request, form, issued=None):
        table = ApiTokenTable(self._tokens(request), request=request)
        table.paginate(page=request.GET.get("page", 1), per_page=50)
        return render(request, "accounts/tokens.html", {"table": table, "form": form, "issued": issued})

    def get(self, request):
        return self._page(request, TokenCreateForm())

    def post(self, request):
        if "revoke" in request.POST:
            token = get_object_or_404(self._tokens(request), pk=request.POST["revoke"])
            services.token_revoke(actor=ui_actor(request), token=token)
            messages.success(request, f"Token {token} revoked.")
            return redirect("accounts:tokens")
        form = TokenCreateForm(request.POST)
        if not form.is_valid():
            return self._page(request, form)
        try:
            # An interactive session mints the token: the safe way whatever the API's token rules.
            issued = services.token_create(actor=ui_actor(request), user=request.user, **form.cleaned_data)
        except FleetError as exc:
            apply_error(form, exc)
            return self._page(request, form)
        return self._page(request, TokenCreateForm(), issued=issued)
