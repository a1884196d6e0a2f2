import pytest

from fleet.audit import Actor, audit_record
from fleet.models import AuditEntry
from tests.factories import SiteFactory

pytestmark = pytest.mark.django_db


def test_audit_log_is_append_only():
    entry = audit_record(actor=Actor.system(), action="site.create", instance=SiteFactory())
    entry.action = "tampered"
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    with pytest.raises(TypeError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="tampered")
    with pytest.raises(TypeError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).action == "site.create"


def test_audit_api_is_read_only_and_filterable(api_client_for):
    client = api_client_for("operator")
    client.post("/api/v1/sites/", {"name": "Audit depot"}, format="json")
    rows = client.get("/api/v1/audit/", {"action": "site.create", "actor": client.user.username}).json()[
        "results"
    ]
    assert len(rows) == 1 and rows[0]["after"]["name"] == "Audit depot" and rows[0]["source"] == "api"
    assert client.post("/api/v1/audit/", {}, format="json").status_code in (403, 405)
    assert client.delete(f"/api/v1/audit/{rows[0]['id']}/").status_code in (403, 405)
