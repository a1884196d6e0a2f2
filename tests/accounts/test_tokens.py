from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from accounts.services import token_create
from fleet.audit import Actor
from fleet.models import AuditEntry
from fleet.secret_keys import key_hash
from tests.api_base import assert_error_body

pytestmark = pytest.mark.django_db


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def session_client_for(make_user):
    """A logged-in client (a session: the user's password stood behind it)."""

    def make(role: str) -> APIClient:
        client = APIClient()
        client.user = make_user(role)
        client.force_login(client.user)
        return client

    return make


def test_token_is_shown_once_and_stored_hashed(session_client_for):
    client = session_client_for(Role.VIEWER)
    response = client.post("/api/v1/tokens/", {"name": "ci script", "expires_in_days": 7}, format="json")
    assert response.status_code == 201, response.content
    key = response.json()["key"]
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert token.key_hash == key_hash(key) and key not in token.key_hash
    assert key.startswith(token.prefix)
    listed = client.get("/api/v1/tokens/").json()["results"]
    assert all("key" not in row for row in listed)
    assert client_with(key).get("/api/v1/devices/").status_code == 200
    assert AuditEntry.objects.filter(action="api_token.create", object_id=str(token.pk)).exists()
    assert "key_hash" not in AuditEntry.objects.get(action="api_token.create", object_id=str(token.pk)).after


def test_revoked_token_is_refused_with_reason(session_client_for):
    client = session_client_for(Role.OPERATOR)
    issued = client.post("/api/v1/tokens/", {"name": "temp"}, format="json").json()
    assert client.delete(f"/api/v1/tokens/{issued['id']}/").status_code == 204
    error = assert_error_body(client_with(issued["key"]).get("/api/v1/devices/"), 401)
    assert "revoked" in error["message"]
    assert AuditEntry.objects.filter(action="api_token.revoke").exists()


def test_expired_token_is_refused_with_reason(make_user):
    issued = token_create(actor=Actor.system(), user=make_user(Role.ADMIN), name="old", expires_in_days=1)
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    error = assert_error_body(client_with(issued.key).get("/api/v1/devices/"), 401)
    assert "expired" in error["message"]


def test_unknown_token_and_deactivated_user_are_refused(make_user, admin_client_api):
    assert_error_body(client_with("flt_nonsense").get("/api/v1/devices/"), 401)
    user = make_user(Role.OPERATOR)
    issued = token_create(actor=Actor.system(), user=user, name="x")
    assert admin_client_api.delete(f"/api/v1/users/{user.pk}/").status_code == 204
    assert_error_body(client_with(issued.key).get("/api/v1/devices/"), 401)
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None


def test_users_see_only_their_tokens_and_admins_see_all(api_client_for):
    viewer, admin = api_client_for(Role.VIEWER), api_client_for(Role.ADMIN)
    viewer_ids = {t["id"] for t in viewer.get("/api/v1/tokens/").json()["results"]}
    admin_ids = {t["id"] for t in admin.get("/api/v1/tokens/").json()["results"]}
    assert len(viewer_ids) == 1 and viewer_ids < admin_ids
    other = next(iter(admin_ids - viewer_ids))
    assert viewer.delete(f"/api/v1/tokens/{other}/").status_code == 404


def test_negative_expiry_is_a_field_error(session_client_for):
    response = session_client_for(Role.VIEWER).post(
        "/api/v1/tokens/", {"name": "x", "expires_in_days": -1}, format="json"
    )
    assert "expires_in_days" in assert_error_body(response, 400, "validation_error")["fields"]


# -- a token cannot mint tokens (issue 12) ---------------------------------------------------------


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ADMIN])
def test_a_leaked_token_cannot_mint_tokens_that_survive_its_revocation(
    api_client_for, admin_client_api, role
):
    leaked = api_client_for(role)  # authenticated by a token, as an attacker holding it would be
    error = assert_error_body(leaked.post("/api/v1/tokens/", {"name": "persistence"}, format="json"), 403)
    assert error["code"] == "token_cannot_mint" and "/api/v1/auth/token/" in error["message"]
    assert ApiToken.objects.filter(user=leaked.user).count() == 1
    (token,) = ApiToken.objects.filter(user=leaked.user)
    assert admin_client_api.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert not ApiToken.objects.filter(user=leaked.user, revoked_at__isnull=True).exists()


def test_a_password_gets_a_token_and_a_wrong_one_gets_nothing(make_user):
    user = make_user(Role.OPERATOR, username="ci-bot")
    user.set_password("correct horse battery staple")
    user.save()
    client = APIClient()
    body = {"username": "ci-bot", "password": "correct horse battery staple", "name": "deploy script"}
    response = client.post("/api/v1/auth/token/", body, format="json")
    assert response.status_code == 201, response.content
    key = response.json()["key"]
    assert client_with(key).get("/api/v1/devices/").status_code == 200
    entry = AuditEntry.objects.get(action="api_token.create", object_id=str(response.json()["id"]))
    assert entry.actor == user and entry.source == "api"

    for wrong in ({**body, "password": "nope"}, {**body, "username": "nobody"}):
        error = assert_error_body(client.post("/api/v1/auth/token/", wrong, format="json"), 401)
        assert error["code"] == "invalid_credentials"
    user.is_active = False
    user.save()
    assert_error_body(client.post("/api/v1/auth/token/", body, format="json"), 401)
    assert ApiToken.objects.filter(user=user).count() == 1


def test_password_logins_are_throttled(make_user, throttle_rates):
    throttle_rates(login="3/min")
    make_user(Role.VIEWER, username="guess-me")
    client = APIClient()
    codes = [
        client.post(
            "/api/v1/auth/token/", {"username": "guess-me", "password": f"p{i}", "name": "x"}, format="json"
        ).status_code
        for i in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


def test_token_create_command_prints_a_working_key(make_user):
    import io

    from django.core.management import CommandError, call_command

    make_user(Role.ADMIN, username="ops")
    out = io.StringIO()
    call_command("token_create", "ops", "--name", "first token", stdout=out, stderr=io.StringIO())
    key = out.getvalue().strip()
    assert client_with(key).get("/api/v1/devices/").status_code == 200
    assert AuditEntry.objects.filter(action="api_token.create", source="system").exists()
    with pytest.raises(CommandError, match="no active user"):
        call_command("token_create", "ghost", "--name", "x", stdout=io.StringIO(), stderr=io.StringIO())
