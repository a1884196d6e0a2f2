"""The fleet device CA: key handling, certificate issuance, CSR checks and CRLs.

Pure `cryptography`, no Django: callers pass keys, certificates and lifetimes
explicitly. Every certificate here is ECDSA P-256 signed with SHA-256.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The broker gives these certificate CNs server rights (see fleet/broker/acl.py).
# Device ids may never start with the reserved prefix, so a device certificate can
# never be mistaken for a server identity nor collide with a server client id.
INGEST_IDENTITY = "fleet-ingest"
ADMIN_IDENTITY = "fleet-admin"
SERVER_IDENTITIES = frozenset({INGEST_IDENTITY, ADMIN_IDENTITY})
RESERVED_PREFIX = "fleet-"

# A device id is a CN, an MQTT username, a client id and one topic level: no "/",
# "+", "#", "$" or whitespace, which would let it escape its ACL pattern.
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

ALLOWED_EC_CURVES = (ec.SECP256R1, ec.SECP384R1)
MIN_RSA_BITS = 2048
# Certificates start slightly in the past so a device whose clock runs a little
# behind the server's still accepts its fresh certificate.
CLOCK_SKEW = dt.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey

_CSR_PEM_MARKER = b"-----BEGIN CERTIFICATE REQUEST-----"


class PKIError(Exception):
    """A refused key, CSR or certificate operation; `reason` is a stable code for callers and APIs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def generate_key() -> PrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def check_device_id(device_id: str) -> None:
    """Raise PKIError('invalid_device_id') unless `device_id` is safe as CN, client id and topic level."""
    if not DEVICE_ID_RE.fullmatch(device_id) or device_id.startswith(RESERVED_PREFIX):
        raise PKIError("invalid_device_id", f"{device_id!r} is not an allowed device id")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _leaf_builder(
    *,
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    subject_cn: str,
    public_key: object,
    not_before: dt.datetime,
    not_after: dt.datetime,
    eku: list[x509.ObjectIdentifier],
) -> x509.CertificateBuilder:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject_cn))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )


def create_ca(*, common_name: str, valid_days: int) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed ECDSA P-256 CA that may sign leaf certificates and CRLs only (path length 0)."""
    key = generate_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def encrypt_private_key(key: PrivateKey, passphrase: bytes) -> bytes:
    """PEM (PKCS#8) encrypted with the best scheme `cryptography` offers; for keys at rest."""
    if not passphrase:
        raise PKIError("empty_passphrase", "a key at rest needs a passphrase")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PEM (PKCS#8): for a broker's TLS key file and test identities, never the CA key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes, passphrase: bytes | None) -> PrivateKey:
    """Load a PEM private key; PKIError('bad_passphrase') if the passphrase does not open it."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError as exc:  # encrypted without passphrase, or passphrase for a clear key
        raise PKIError("bad_passphrase", str(exc)) from exc
    except ValueError as exc:
        # cryptography reports a wrong passphrase and a corrupt key with the same type.
        if b"ENCRYPTED" in pem:
            raise PKIError("bad_passphrase", "the passphrase does not decrypt this key") from exc
        raise PKIError("key_malformed", str(exc)) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError("key_type_not_allowed", type(key).__name__)
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificate(pem: str | bytes) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PKIError("cert_malformed", str(exc)) from exc


def issue_server_cert(
    *,
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    valid_days: int,
) -> tuple[PrivateKey, x509.Certificate]:
    """A TLS server certificate (EKU serverAuth) for the broker, with SANs for each name and address."""
    key = generate_key()
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if not sans:
        raise PKIError("no_subject_alt_name", "a server certificate needs a DNS name or an IP address")
    cert = (
        _leaf_builder(
            ca_key=ca_key,
            ca_cert=ca_cert,
            subject_cn=common_name,
            public_key=key.public_key(),
            not_before=now - CLOCK_SKEW,
            not_after=now + dt.timedelta(days=valid_days),
            eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def issue_client_cert(
    *, ca_key: PrivateKey, ca_cert: x509.Certificate, common_name: str, valid_days: int
) -> tuple[PrivateKey, x509.Certificate]:
    """A client certificate whose key the server makes itself: the server's own MQTT identities."""
    key = generate_key()
    now = _now()
    cert = _leaf_builder(
        ca_key=ca_key,
        ca_cert=ca_cert,
        subject_cn=common_name,
        public_key=key.public_key(),
        not_before=now - CLOCK_SKEW,
        not_after=now + dt.timedelta(days=valid_days),
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
    ).sign(ca_key, hashes.SHA256())
    return key, cert


def create_csr(*, key: object, common_name: str) -> bytes:
    """A PEM CSR, as a device makes it (the server ignores the subject it asks for)."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return csr.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _check_public_key(public_key: object) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ALLOWED_EC_CURVES):
            raise PKIError("key_type_not_allowed", f"EC curve {public_key.curve.name} is not allowed")
        return
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise PKIError("key_type_not_allowed", f"RSA {public_key.key_size} bits is below {MIN_RSA_BITS}")
        return
    raise PKIError("key_type_not_allowed", f"{type(public_key).__name__} keys are not allowed")


def load_csr(pem: str | bytes, *, max_bytes: int = 8192) -> x509.CertificateSigningRequest:
    """Parse and check a device CSR: size, PEM form, self-signature (proof of key possession), key type."""
    data = pem.encode("utf-8", "replace") if isinstance(pem, str) else pem
    if len(data) > max_bytes:
        raise PKIError("csr_too_large", f"{len(data)} bytes, at most {max_bytes}")
    if _CSR_PEM_MARKER not in data:
        raise PKIError("csr_malformed", "not a PEM certificate request")
    try:
        csr = x509.load_pem_x509_csr(data)
        public_key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise PKIError("csr_malformed", str(exc)) from exc
    except x509.UnsupportedGeneralNameType as exc:  # pragma: no cover - exotic SAN types
        raise PKIError("csr_malformed", str(exc)) from exc
    # Key type first: is_signature_valid cannot verify e.g. DSA with unusual params.
    _check_public_key(public_key)
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise PKIError("csr_bad_signature", str(exc)) from exc
    if not valid:
        raise PKIError("csr_bad_signature", "the CSR is not signed by its own key")
    return csr


def sign_device_csr(
    *,
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    device_id: str,
    valid_seconds: int,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Certificate for a checked CSR (see load_csr): CN = device_id, clientAuth only, random serial.

    The CSR's subject and extensions are ignored: the server decides the identity.
    `now` moves the validity window (tests mint expired certificates with it).
    """
    check_device_id(device_id)
    if valid_seconds <= 0:
        raise PKIError("invalid_lifetime", f"valid_seconds must be positive, got {valid_seconds}")
    start = now or _now()
    return _leaf_builder(
        ca_key=ca_key,
        ca_cert=ca_cert,
        subject_cn=device_id,
        public_key=csr.public_key(),
        not_before=start - CLOCK_SKEW,
        not_after=start + dt.timedelta(seconds=valid_seconds),
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
    ).sign(ca_key, hashes.SHA256())


def build_crl(
    *,
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    revoked: Iterable[tuple[int, dt.datetime]],
    next_update: dt.timedelta,
    crl_number: int | None = None,
) -> bytes:
    """PEM CRL listing every (serial, revoked_at) given; the whole list, not a delta.

    Mosquitto refuses every client once `next_update` has passed, so the caller must
    publish a fresh CRL well before then. `crl_number` defaults to the time in ms,
    which increases between publications.
    """
    now = _now()
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + next_update)
        .add_extension(
            x509.CRLNumber(crl_number if crl_number is not None else time.time_ns() // 1_000_000), False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at).build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    """Replace `path` with `data` so readers see the old or the new file, never a torn one."""
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must survive a crash too.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
