"""`manage.py pki init`: the fleet's two CAs, the broker's server certificate and the server's MQTT identities.

- The device CA signs device certificates (enrollment) and the broker's server certificate,
  which devices check against the CA they got at enrollment.
- The server CA signs only the server's own identities (fleet-ingest, fleet-admin). The broker's
  server listener trusts the server CA alone, so a device certificate cannot even complete a
  TLS handshake there (docs/security.md, "Listeners").

Idempotent: files that exist are kept (the missing ones are issued by the existing CAs), and
server identities that an older layout issued from the device CA are issued again from the
server CA. `--force` replaces everything, which is a CA rotation: every device must enroll again.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
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


def _issued_by(cert_file: Path, ca_cert: x509.Certificate) -> bool:
    try:
        cert = pki.load_certificate(cert_file.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature, pki.PKIError):
        return False
    return True


class Command(BaseCommand):
    help = "Create the fleet device CA and server CA (keys encrypted with PKI_CA_PASSPHRASE) and the server certificates."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["init"])
        parser.add_argument("--force", action="store_true", help="Replace existing files: a new CA.")
        parser.add_argument("--dir", help="Directory (default: PKI_DIR).")

    def _ca(self, key_file: Path, cert_file: Path, common_name: str, force: bool, passphrase: bytes):
        """The CA in (key_file, cert_file), created if missing (or with --force)."""
        if force or not key_file.exists():
            if cert_file.exists() and not force:
                raise CommandError(f"{cert_file} exists without its key; refusing to guess (use --force).")
            ca_key, ca_cert = pki.create_ca(common_name=common_name, valid_days=settings.PKI_CA_VALID_DAYS)
            pki.write_atomic(key_file, pki.encrypt_private_key(ca_key, passphrase), mode=0o600)
            pki.write_atomic(cert_file, pki.cert_pem(ca_cert))
            self.stdout.write(f"created CA {cert_file}")
            return ca_key, ca_cert
        try:
            ca_key = pki.load_private_key(key_file.read_bytes(), passphrase)
            ca_cert = pki.load_certificate(cert_file.read_bytes())
        except (pki.PKIError, OSError) as exc:
            raise CommandError(f"cannot open the existing CA: {exc}") from exc
        if ca_key.public_key() != ca_cert.public_key():
            raise CommandError(f"{key_file} does not belong to {cert_file}")
        return ca_key, ca_cert

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
        ca_key, ca_cert = self._ca(files.ca_key, files.ca_cert, "Fleet Device CA", force, passphrase)
        server_ca_key, server_ca_cert = self._ca(
            files.server_ca_key, files.server_ca_cert, "Fleet Server CA", force, passphrase
        )

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
        reissued = False
        for name, cert_file, key_file in (
            (pki.INGEST_IDENTITY, files.ingest_cert, files.ingest_key),
            (pki.ADMIN_IDENTITY, files.admin_cert, files.admin_key),
        ):
            if force or not key_file.exists() or not _issued_by(cert_file, server_ca_cert):
                key, cert = pki.issue_client_cert(
                    ca_key=server_ca_key, ca_cert=server_ca_cert, common_name=name, valid_days=days
                )
                pki.write_atomic(key_file, pki.private_key_pem(key), mode=0o600)
                pki.write_atomic(cert_file, pki.cert_pem(cert))
                self.stdout.write(f"issued client certificate {name} (server CA)")
                reissued = True
        broker_runtime.reset()
        if existing and not force and not reissued and len(existing) == len(files.all()):
            self.stdout.write(
                f"PKI in {directory} already initialised; nothing changed (--force replaces it)"
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"PKI ready in {directory}"))
