"""The device search (`?q=`) is served by the trigram indexes of migration 0003 on PostgreSQL."""

import pytest
from django.db import connection

from devices.filters import DeviceFilterSet
from devices.models import Device
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="trigram indexes are PostgreSQL only")
def test_search_plan_uses_the_trigram_indexes():
    DeviceFactory.create_batch(3)
    queryset = DeviceFilterSet({"q": "dock cam"}, queryset=Device.objects.all()).qs.order_by()
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # A three-row table is cheaper to scan (sequentially or along the primary key); forbid
        # both so the plan shows what a big table gets (bench/README.md, "API").
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    for column in ("name", "device_id", "serial"):
        assert f"devices_device_{column}_trgm" in plan, plan


def test_search_matches_name_device_id_and_serial_case_insensitively():
    by_name = DeviceFactory(name="Dock Cam 17", device_id="cam-abcdef123456")
    by_serial = DeviceFactory(serial="SN-DOCK-CAM-9")
    DeviceFactory(name="lobby")
    found = set(DeviceFilterSet({"q": "dock"}, queryset=Device.objects.all()).qs)
    assert found == {by_name, by_serial}
    assert set(DeviceFilterSet({"q": "CDEF12"}, queryset=Device.objects.all()).qs) == {by_name}
