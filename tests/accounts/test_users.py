import pytest

from accounts.models import Role, User
from fleet.models import AuditEntry
from tests.api_base import assert_error_body

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.OPERATOR, 403), (Role.ADMIN, 201)])
def test_only_admins_manage_users(api_client_for, role, status):
    client = api_client_for(role)
    response = client.post("/api/v1/users/", {"username": f"new-{role}", "role": "operator"}, format="json")
    assert response.status_code == status, response.content
    assert client.get("/api/v1/users/").status_code == (200 if status == 201 else 403)


def test_admin_changes_role_and_it_is_audited_without_password(admin_client_api, make_user):
    user = make_user(Role.VIEWER)
    response = admin_client_api.patch(f"/api/v1/users/{user.pk}/", {"role": "operator"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "operator"
    entry = AuditEntry.objects.get(action="user.update", object_id=str(user.pk))
    assert entry.before["role"] == "viewer" and entry.after["role"] == "operator"
    assert "password" not in entry.after


def test_admin_cannot_change_own_role(admin_client_api):
    me = admin_client_api.user
    assert_error_body(
        admin_client_api.patch(f"/api/v1/users/{me.pk}/", {"role": "viewer"}, format="json"), 403
    )
    assert User.objects.get(pk=me.pk).role == Role.ADMIN


def test_me_shows_own_role_to_any_user(api_client_for):
    assert api_client_for(Role.VIEWER).get("/api/v1/users/me/").json()["role"] == "viewer"


def test_duplicate_username_is_a_field_error(admin_client_api, make_user):
    make_user(username="taken")
    response = admin_client_api.post("/api/v1/users/", {"username": "taken"}, format="json")
    assert "username" in assert_error_body(response, 400, "duplicate")["fields"]


def test_superuser_counts_as_admin(make_user):
    user = make_user(Role.VIEWER, is_superuser=True)
    assert user.has_role(Role.ADMIN)
