"""Trigram indexes for the device search (`?q=`), PostgreSQL only.

`icontains` compiles to `UPPER(col) LIKE UPPER('%...%')`, which no btree index serves: at 100k
devices the search was a sequential scan (bench/README.md, "API"). GIN trigram indexes on the
same expressions turn it into a BitmapOr of index scans. SQLite (the embedded default) keeps the scan.
"""

from django.db import migrations

COLUMNS = ("name", "device_id", "serial")


def _index(column: str) -> str:
    return f"devices_device_{column}_trgm"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {_index(column)} ON devices_device "
            f"USING gin (UPPER({column}) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {_index(column)}")


class Migration(migrations.Migration):
    dependencies = [("devices", "0002_identity")]

    operations = [migrations.RunPython(create, drop)]
