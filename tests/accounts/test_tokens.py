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


def test_token_is_shown_once_and_stored_hashed(api_client_for):
    client = api_client_for(Role.VIEWER)
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


def test_revoked_token_is_refused_with_reason(api_client_for):
    client = api_client_for(Role.OPERATOR)
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


def test_negative_expiry_is_a_field_error(api_client_for):
    response = api_client_for(Role.VIEWER).post(
        "/api/v1/tokens/", {"name": "x", "expires_in_days": -1}, format="json"
    )
    assert "expires_in_days" in assert_error_body(response, 400, "validation_error")["fields"]
