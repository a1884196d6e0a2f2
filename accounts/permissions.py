from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Role


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
