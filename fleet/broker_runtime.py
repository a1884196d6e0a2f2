"""The glue between settings and the PKI / broker code: where the files are, which broker is in charge.

- `pki_files()`: the layout of PKI_DIR that `manage.py pki init` writes.
- `signing_ca()`: the CA key and certificate for signing device certificates (cached;
  decrypting the key costs a key derivation, which must not happen per enrollment).
- `revoker()`: the process-wide MosquittoRevoker ("mosquitto" mode).
- `embedded()`: the embedded broker running in this process (demo.components starts it).
- `check_broker()`: the /readyz check.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from django.conf import settings

from fleet import pki

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PkiFiles:
    ca_cert: Path  # the device CA: device certificates and the broker's server certificate
    ca_key: Path  # encrypted with PKI_CA_PASSPHRASE
    server_ca_cert: Path  # the server CA: fleet-ingest and fleet-admin only
    server_ca_key: Path  # encrypted with PKI_CA_PASSPHRASE
    broker_cert: Path
    broker_key: Path
    ingest_cert: Path
    ingest_key: Path
    admin_cert: Path
    admin_key: Path

    def all(self) -> list[Path]:
        return [getattr(self, name) for name in self.__dataclass_fields__]


def pki_files(directory: str | os.PathLike[str] | None = None) -> PkiFiles:
    root = Path(directory or settings.PKI_DIR)
    ingest, admin = pki.INGEST_IDENTITY, pki.ADMIN_IDENTITY
    return PkiFiles(
        ca_cert=root / "ca.crt",
        ca_key=root / "ca.key",
        server_ca_cert=root / "server-ca.crt",
        server_ca_key=root / "server-ca.key",
        broker_cert=root / "broker.crt",
        broker_key=root / "broker.key",
        ingest_cert=root / f"{ingest}.crt",
        ingest_key=root / f"{ingest}.key",
        admin_cert=root / f"{admin}.crt",
        admin_key=root / f"{admin}.key",
    )


# -- the signing CA ----------------------------------------------------------------------------

_ca_lock = threading.Lock()
_ca_cache: dict[tuple, tuple[pki.PrivateKey, x509.Certificate, bytes]] = {}


def _ca_entry() -> tuple[pki.PrivateKey, x509.Certificate, bytes]:
    files = pki_files()
    try:
        stamp = (str(files.ca_key), files.ca_key.stat().st_mtime_ns, files.ca_cert.stat().st_mtime_ns)
    except FileNotFoundError as exc:
        raise pki.PKIError("ca_missing", f"{exc.filename} not found: run `manage.py pki init`") from exc
    with _ca_lock:
        entry = _ca_cache.get(stamp)
        if entry is None:
            cert_pem = files.ca_cert.read_bytes()
            key = pki.load_private_key(files.ca_key.read_bytes(), settings.PKI_CA_PASSPHRASE.encode())
            cert = pki.load_certificate(cert_pem)
            if key.public_key() != cert.public_key():
                raise pki.PKIError("ca_mismatch", "ca.key does not belong to ca.crt")
            _ca_cache.clear()  # a rotated CA replaces the old entry
            entry = _ca_cache[stamp] = (key, cert, cert_pem)
    return entry


def signing_ca() -> tuple[pki.PrivateKey, x509.Certificate]:
    """The fleet CA's key and certificate; PKIError('ca_missing' / 'bad_passphrase' / ...) if unusable."""
    key, cert, _ = _ca_entry()
    return key, cert


def ca_pem() -> str:
    """The CA certificate as devices get it (enrollment answer, down/cert)."""
    return _ca_entry()[2].decode()


# -- Mosquitto ------------------------------------------------------------------------------------

_revoker_lock = threading.Lock()
_revoker = None


def crl_path() -> Path:
    return Path(settings.MQTT_BROKER_DIR) / "crl.pem"


def revoker():
    """The process-wide MosquittoRevoker for the configured broker (admin connection opened on first use)."""
    global _revoker
    from fleet.broker.revocation import MosquittoRevoker

    with _revoker_lock:
        if _revoker is None:
            ca_key, ca_cert = signing_ca()
            _revoker = MosquittoRevoker(
                crl_path=crl_path(),
                ca_key=ca_key,
                ca_cert=ca_cert,
                host=settings.MQTT_HOST,
                port=settings.MQTT_PORT,
                ca_file=settings.MQTT_CA_FILE,
                admin_cert_file=settings.MQTT_ADMIN_CERT,
                admin_key_file=settings.MQTT_ADMIN_KEY,
                pid_file=settings.MQTT_BROKER_PID_FILE,
                broker_user=settings.MQTT_BROKER_USER or None,
                crl_validity=_crl_validity(),
            )
        return _revoker


def _crl_validity() -> dt.timedelta:
    return dt.timedelta(hours=settings.PKI_CRL_VALIDITY_HOURS)


def reset() -> None:
    """Forget cached CA and revoker (tests that switch PKI_DIR or brokers, CA rotation)."""
    global _revoker
    with _revoker_lock:
        if _revoker is not None:
            _revoker.close()
            _revoker = None
    with _ca_lock:
        _ca_cache.clear()


# -- the embedded broker ----------------------------------------------------------------------------

_embedded = None


def embedded():
    """The embedded broker running in this process, or None."""
    return _embedded


def set_embedded(broker) -> None:
    """Register an embedded broker started elsewhere (tests) as this process's broker."""
    global _embedded
    _embedded = broker


# -- readiness --------------------------------------------------------------------------------------


def check_broker() -> None:
    """/readyz: the broker's server listener completes an mTLS handshake with our certificate.

    In "embedded" mode the broker lives in the demo process: checked there, skipped
    in a process that does not run it (a plain runserver, tests).
    """
    if settings.MQTT_BROKER == "embedded":
        broker = embedded()
        if broker is None:
            return
        wildcard = broker.host in ("0.0.0.0", "")  # noqa: S104 - a bind address, compared only
        host, port = "127.0.0.1" if wildcard else broker.host, broker.port
    else:
        host, port = settings.MQTT_HOST, settings.MQTT_PORT
    if not settings.MQTT_TLS:
        socket.create_connection((host, port), timeout=3).close()
        return
    context = ssl.create_default_context(cafile=settings.MQTT_CA_FILE)
    context.load_cert_chain(settings.MQTT_CLIENT_CERT, settings.MQTT_CLIENT_KEY)
    with (
        socket.create_connection((host, port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname=host),
    ):
        pass
