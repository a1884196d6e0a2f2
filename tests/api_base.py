"""A base every CRUD endpoint's test builds on: permission matrix, error body, pagination, audit, query counts."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import Role
from fleet.models import AuditEntry

ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


def assert_error_body(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["message"]
    assert isinstance(error["fields"], dict)
    if code:
        assert error["code"] == code, error
    return error


@pytest.mark.django_db
class CrudApiContract:
    """Subclass with url, factory, create_payload(), update_payload() and the roles that may read and write."""

    url: str
    lookup: str = "pk"
    read_role = Role.VIEWER
    write_role = Role.OPERATOR
    deletable = True

    def create_payload(self) -> dict:
        raise NotImplementedError

    def update_payload(self) -> dict:
        raise NotImplementedError

    def make(self, **kwargs):
        return self.factory(**kwargs)

    def detail_url(self, obj) -> str:
        return f"{self.url}{getattr(obj, self.lookup)}/"

    @pytest.mark.parametrize("role", ROLES)
    def test_role_matrix(self, api_client_for, role):
        client = api_client_for(role)
        obj = self.make()
        can_read, can_write = RANK[role] >= RANK[self.read_role], RANK[role] >= RANK[self.write_role]
        assert client.get(self.url).status_code == (200 if can_read else 403)
        assert client.get(self.detail_url(obj)).status_code == (200 if can_read else 403)
        response = client.post(self.url, self.create_payload(), format="json")
        assert response.status_code == (201 if can_write else 403), response.content
        response = client.patch(self.detail_url(obj), self.update_payload(), format="json")
        assert response.status_code == (200 if can_write else 403), response.content
        if self.deletable:
            assert client.delete(self.detail_url(obj)).status_code == (204 if can_write else 403)

    def test_anonymous_is_refused_with_error_body(self, db):
        assert_error_body(APIClient().get(self.url), 401, "not_authenticated")

    def test_every_write_is_audited(self, api_client_for):
        client = api_client_for(self.write_role)
        before = AuditEntry.objects.count()
        created = client.post(self.url, self.create_payload(), format="json")
        assert created.status_code == 201, created.content
        obj = self.factory._meta.model.objects.get(pk=created.json()["id"])
        assert client.patch(self.detail_url(obj), self.update_payload(), format="json").status_code == 200
        actions = list(
            AuditEntry.objects.order_by("id").values_list("action", "actor_label", "source")[before:]
        )
        model = self.factory._meta.model._meta.model_name
        assert (f"{model}.create", client.user.username, "api") in actions
        assert any(a[0].startswith(model) and a[0] != f"{model}.create" for a in actions)
        if self.deletable:
            assert client.delete(self.detail_url(obj)).status_code == 204
            assert AuditEntry.objects.filter(action=f"{model}.delete", object_id=str(obj.pk)).exists()

    def test_unknown_field_is_a_field_error(self, api_client_for):
        client = api_client_for(self.write_role)
        response = client.post(self.url, {**self.create_payload(), "no_such_field": 1}, format="json")
        error = assert_error_body(response, 400, "validation_error")
        assert "no_such_field" in error["fields"]

    def test_wrong_body_type_is_a_400(self, api_client_for):
        client = api_client_for(self.write_role)
        assert_error_body(client.post(self.url, [1, 2], format="json"), 400)
        response = client.post(self.url, b"{not json", content_type="application/json")
        assert_error_body(response, 400, "parse_error")

    def test_missing_object_is_a_404_error_body(self, api_client_for):
        client = api_client_for(self.read_role)
        assert_error_body(client.get(f"{self.url}999999999/"), 404, "not_found")

    def test_list_query_count_does_not_grow_with_rows(self, api_client_for):
        client = api_client_for(self.read_role)
        self.make()
        client.get(self.url)  # the token's first use writes last_used_at; measure steady state
        with CaptureQueriesContext(connection) as few:
            assert client.get(self.url).status_code == 200
        for _ in range(15):
            self.make()
        with CaptureQueriesContext(connection) as many:
            assert client.get(self.url).status_code == 200
        assert len(many) == len(few), [q["sql"] for q in many.captured_queries]

    def test_cursor_pages_are_stable_under_inserts(self, api_client_for):
        client = api_client_for(self.read_role)
        for _ in range(7):
            self.make()
        existing = {r["id"] for r in self._all_pages(client)}
        first = client.get(self.url, {"page_size": 3}).json()
        seen = [r["id"] for r in first["results"]]
        for _ in range(5):  # rows inserted between page requests must not shift or repeat later pages
            self.make()
        url = first["next"]
        while url:
            page = client.get(url).json()
            seen += [r["id"] for r in page["results"]]
            url = page["next"]
        assert len(seen) == len(set(seen))
        assert set(seen) >= existing

    def _all_pages(self, client):
        url, rows = self.url, []
        while url:
            page = client.get(url).json()
            rows += page["results"]
            url = page["next"]
        return rows
