from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import ApiToken, Role


class RolePermission(BasePermission):
    """Reads need `view.read_role` (viewer), writes need `view.write_role` (operator) unless a view says otherwise."""

    message = "Your role does not allow this action."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            needed = getattr(view, "read_role", Role.VIEWER)
        else:
            needed = getattr(view, "write_role", Role.OPERATOR)
        return user.has_role(needed)


class PasswordBacked(BasePermission):
    """Creating an API token needs the user's password behind the request: a login session or
    POST /api/v1/auth/token/. A token cannot mint tokens, so a leaked one dies with its revocation."""

    message = "An API token cannot create API tokens: log in, or POST your password to /api/v1/auth/token/."
    code = "token_cannot_mint"

    def has_permission(self, request, view) -> bool:
        return getattr(view, "action", None) != "create" or not isinstance(request.auth, ApiToken)
