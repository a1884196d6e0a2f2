"""`python -m stack.prepare`: the stack's one-off steps before its servers start, in one Django process.

Each step does only what is missing, so a second start changes nothing but the broker files:
- the database: `migrate`;
- the PKI: `pki init` (device CA, server CA, broker certificate, fleet-ingest / fleet-admin);
- the broker: `broker_config` (mosquitto.conf, ACL, dynamic-security JSON, a fresh CRL);
- the OTA keys: `ota_keys init`, the root key written to STACK_DIR/ota-root.key (move it offline);
- a first admin user, its password printed once and kept in STACK_DIR/admin-password (0600).

Prints one line per thing it did; configured by the environment like every process of the stack.
"""

from __future__ import annotations

import getpass
import io
import os
import secrets
import sys
from pathlib import Path


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from fleet import broker_runtime

    out = sys.stdout
    data_dir = Path(settings.DATA_DIR)
    data_dir.mkdir(parents=True, exist_ok=True)

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        call_command("migrate", interactive=False, verbosity=0)
        print(f"database migrated ({len(pending)} migrations applied)", file=out)

    files = broker_runtime.pki_files()
    if not all(p.exists() for p in files.all()):
        call_command("pki", "init", stdout=io.StringIO())
        print(f"PKI created in {settings.PKI_DIR} (CA keys encrypted with PKI_CA_PASSPHRASE)", file=out)
    call_command("broker_config", run_as_user=getpass.getuser(), stdout=io.StringIO(), stderr=io.StringIO())

    from fleet.audit import Actor
    from ota.models import KeyRole, SigningKey

    if not SigningKey.objects.filter(role=KeyRole.ROOT).exists():
        from ota.services import keys_init

        root = data_dir / "ota-root.key"
        keys_init(actor=Actor.system("make stack"), root_out=str(root))
        print(f"OTA keys created; the root private key is {root}: move it offline", file=out)

    from accounts.models import Role, User

    name = os.environ.get("STACK_ADMIN_USER") or "admin"
    if not User.objects.filter(username=name).exists():
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=name, email="", password=password, role=Role.ADMIN)
        _write_secret(data_dir / "admin-password", password + "\n")
        print(
            f"user {name}, password {password} (shown once; also in {data_dir / 'admin-password'})", file=out
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
