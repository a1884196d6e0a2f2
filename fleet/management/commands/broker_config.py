"""`manage.py broker_config`: Mosquitto's config, ACL, dynsec JSON and a CRL, from settings and the database.

Run after `manage.py pki init`; start Mosquitto with `mosquitto -c <dir>/mosquitto.conf`.
The dynsec JSON is Mosquitto's own state once it runs, so it is written only if absent
(or with --force). The CRL lists every revoked, unexpired certificate.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fleet import broker_runtime, pki
from fleet.broker import mosquitto


class Command(BaseCommand):
    help = "Write mosquitto.conf, the ACL file, the dynamic-security JSON and the CRL into MQTT_BROKER_DIR."

    def add_arguments(self, parser):
        parser.add_argument("--dir", help="Directory (default: MQTT_BROKER_DIR).")
        parser.add_argument("--force", action="store_true", help="Also replace the dynamic-security JSON.")
        parser.add_argument("--dynsec-plugin", help="Path of mosquitto_dynamic_security.so (default: found).")
        parser.add_argument("--run-as-user", help="Mosquitto's `user` setting (default: the package's).")

    def handle(self, *args, dir: str | None, force: bool, dynsec_plugin: str | None, run_as_user, **options):
        from devices.identity_selectors import revoked_certificates

        if settings.MQTT_PORT == settings.MQTT_DEVICE_PORT:
            raise CommandError(
                "MQTT_PORT (server listener) equals MQTT_DEVICE_PORT: set MQTT_BROKER=mosquitto, "
                "or give the server listener its own MQTT_PORT."
            )
        directory = Path(dir or settings.MQTT_BROKER_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        files = broker_runtime.pki_files()
        try:
            ca_key, ca_cert = broker_runtime.signing_ca()
        except pki.PKIError as exc:
            raise CommandError(f"the device CA is not usable ({exc}): run `manage.py pki init`") from exc
        crl_file, acl_file, dynsec_file = (
            directory / "crl.pem",
            directory / "acl",
            directory / "dynamic-security.json",
        )
        (directory / "data").mkdir(exist_ok=True)
        try:
            rendered = mosquitto.render(
                port_devices=settings.MQTT_DEVICE_PORT,
                port_ingest=settings.MQTT_PORT,
                bind=settings.MQTT_DEVICE_BIND,
                server_bind=settings.MQTT_SERVER_BIND,
                cafile=str(files.ca_cert),
                server_cafile=str(files.server_ca_cert),
                certfile=str(files.broker_cert),
                keyfile=str(files.broker_key),
                crlfile=str(crl_file),
                acl_file=str(acl_file),
                dynsec_file=str(dynsec_file),
                dynsec_plugin_path=dynsec_plugin,
                persistence_dir=str(directory / "data"),
                max_queued_bytes=settings.MQTT_BROKER_MAX_QUEUED_BYTES,
                autosave_interval_s=settings.MQTT_BROKER_AUTOSAVE_S,
                pid_file=settings.MQTT_BROKER_PID_FILE,
                run_as_user=run_as_user,
            )
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        mosquitto.write_files(directory, rendered)
        if force or not dynsec_file.exists():
            pki.write_atomic(dynsec_file, mosquitto.dynsec_initial_config(), mode=0o600)
        pki.write_atomic(
            crl_file,
            pki.build_crl(
                ca_key=ca_key,
                ca_cert=ca_cert,
                revoked=revoked_certificates(),
                next_update=dt.timedelta(hours=settings.PKI_CRL_VALIDITY_HOURS),
            ),
            mode=0o644,
        )
        if settings.MQTT_SERVER_BIND in ("0.0.0.0", "::", ""):  # noqa: S104 - warning about a bind address
            self.stderr.write(
                self.style.WARNING(
                    "MQTT_SERVER_BIND listens on every interface: keep the server listener unreachable "
                    "from devices (docs/security.md)."
                )
            )
        self.stdout.write(self.style.SUCCESS(f"broker configuration written to {directory}"))
