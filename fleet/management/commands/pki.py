"""`manage.py pki init`: the fleet device CA, the broker's server certificate and the server's MQTT identities.

Idempotent: files that exist are kept (the missing ones are issued by the existing CA);
`--force` replaces everything, which is a CA rotation: every device must enroll again.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fleet import broker_runtime, pki


def _split_sans(names: list[str]) -> tuple[list[str], list[str]]:
    dns, ips = [], []
    for name in dict.fromkeys(n.strip() for n in names if n.strip()):
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name)
    return dns, ips


class Command(BaseCommand):
    help = "Create the fleet device CA (key encrypted with PKI_CA_PASSPHRASE) and the server certificates."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["init"])
        parser.add_argument("--force", action="store_true", help="Replace existing files: a new CA.")
        parser.add_argument("--dir", help="Directory (default: PKI_DIR).")

    def handle(self, *args, action: str, force: bool, dir: str | None, **options):
        directory = Path(dir or settings.PKI_DIR)
        files = broker_runtime.pki_files(directory)
        passphrase = settings.PKI_CA_PASSPHRASE.encode()
        if not passphrase:
            raise CommandError("PKI_CA_PASSPHRASE is empty: the CA key must be encrypted at rest.")
        existing = [p for p in files.all() if p.exists()]
        if existing and force:
            self.stderr.write(
                self.style.WARNING("--force: replacing the CA; every device must enroll again.")
            )
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)

        if force or not files.ca_key.exists():
            if files.ca_cert.exists() and not force:
                raise CommandError(
                    f"{files.ca_cert} exists without its key; refusing to guess (use --force)."
                )
            ca_key, ca_cert = pki.create_ca(
                common_name="Fleet Device CA", valid_days=settings.PKI_CA_VALID_DAYS
            )
            pki.write_atomic(files.ca_key, pki.encrypt_private_key(ca_key, passphrase), mode=0o600)
            pki.write_atomic(files.ca_cert, pki.cert_pem(ca_cert))
            self.stdout.write(f"created CA {files.ca_cert}")
        else:
            try:
                ca_key = pki.load_private_key(files.ca_key.read_bytes(), passphrase)
                ca_cert = pki.load_certificate(files.ca_cert.read_bytes())
            except (pki.PKIError, OSError) as exc:
                raise CommandError(f"cannot open the existing CA: {exc}") from exc
            if ca_key.public_key() != ca_cert.public_key():
                raise CommandError(f"{files.ca_key} does not belong to {files.ca_cert}")

        days = settings.PKI_SERVER_CERT_DAYS
        if force or not (files.broker_cert.exists() and files.broker_key.exists()):
            dns, ips = _split_sans(
                [settings.MQTT_DEVICE_HOST, settings.MQTT_HOST, *settings.MQTT_BROKER_SANS]
            )
            key, cert = pki.issue_server_cert(
                ca_key=ca_key,
                ca_cert=ca_cert,
                common_name=(dns or ips)[0],
                dns_names=dns,
                ip_addresses=ips,
                valid_days=days,
            )
            # 0640: the broker (group mosquitto in production) must read its key.
            pki.write_atomic(files.broker_key, pki.private_key_pem(key), mode=0o640)
            pki.write_atomic(files.broker_cert, pki.cert_pem(cert))
            self.stdout.write(f"issued broker certificate for {', '.join(dns + ips)}")
        for name, cert_file, key_file in (
            (pki.INGEST_IDENTITY, files.ingest_cert, files.ingest_key),
            (pki.ADMIN_IDENTITY, files.admin_cert, files.admin_key),
        ):
            if force or not (cert_file.exists() and key_file.exists()):
                key, cert = pki.issue_client_cert(
                    ca_key=ca_key, ca_cert=ca_cert, common_name=name, valid_days=days
                )
                pki.write_atomic(key_file, pki.private_key_pem(key), mode=0o600)
                pki.write_atomic(cert_file, pki.cert_pem(cert))
                self.stdout.write(f"issued client certificate {name}")
        broker_runtime.reset()
        if existing and not force and len(existing) == len(files.all()):
            self.stdout.write(
                f"PKI in {directory} already initialised; nothing changed (--force replaces it)"
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"PKI ready in {directory}"))
