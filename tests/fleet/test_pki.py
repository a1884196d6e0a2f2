"""fleet/pki.py: the device CA, CSR checks, device certificates, CRLs, atomic writes."""

import datetime as dt
import os
import stat
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleet import pki


@pytest.fixture(scope="module")
def ca():
    return pki.create_ca(common_name="Fleet Test CA", valid_days=30)


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _csr_for(key, cn="whatever") -> bytes:
    return pki.create_csr(key=key, common_name=cn)


def test_ca_is_a_constrained_p256_ca(ca):
    key, cert = ca
    assert isinstance(key.curve, ec.SECP256R1)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert.verify_directly_issued_by(cert)


def test_key_at_rest_round_trip_and_wrong_passphrase(ca):
    key, _ = ca
    pem = pki.encrypt_private_key(key, b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    loaded = pki.load_private_key(pem, b"correct horse")
    assert loaded.private_numbers() == key.private_numbers()
    with pytest.raises(pki.PKIError) as err:
        pki.load_private_key(pem, b"wrong")
    assert err.value.reason == "bad_passphrase"
    with pytest.raises(pki.PKIError) as err:
        pki.load_private_key(pem, None)
    assert err.value.reason == "bad_passphrase"
    with pytest.raises(pki.PKIError):
        pki.encrypt_private_key(key, b"")


def test_server_and_client_certs(ca):
    ca_key, ca_cert = ca
    _, server = pki.issue_server_cert(
        ca_key=ca_key,
        ca_cert=ca_cert,
        common_name="broker",
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        valid_days=10,
    )
    server.verify_directly_issued_by(ca_cert)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]

    _, client = pki.issue_client_cert(
        ca_key=ca_key, ca_cert=ca_cert, common_name="fleet-ingest", valid_days=10
    )
    assert _cn(client) == "fleet-ingest"
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate,
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_device_csr_is_signed_with_server_chosen_identity(ca, make_key):
    ca_key, ca_cert = ca
    device_key = make_key()
    csr = pki.load_csr(_csr_for(device_key, cn="fleet-ingest"))  # a hostile subject is ignored
    before = dt.datetime.now(dt.UTC)
    cert = pki.sign_device_csr(
        ca_key=ca_key, ca_cert=ca_cert, csr=csr, device_id="cam-0001", valid_seconds=3600
    )
    cert.verify_directly_issued_by(ca_cert)
    assert _cn(cert) == "cam-0001"
    assert cert.public_key() == device_key.public_key()
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_before_utc < before  # backdated for clock skew
    lifetime = cert.not_valid_after_utc - before
    assert dt.timedelta(minutes=59) < lifetime <= dt.timedelta(hours=1)


def test_device_serials_are_random_and_unique(ca):
    ca_key, ca_cert = ca
    csr = pki.load_csr(_csr_for(pki.generate_key()))
    serials = {
        pki.sign_device_csr(
            ca_key=ca_key, ca_cert=ca_cert, csr=csr, device_id="d1", valid_seconds=60
        ).serial_number
        for _ in range(20)
    }
    assert len(serials) == 20
    assert all(s.bit_length() > 64 for s in serials)


@pytest.mark.parametrize(
    "device_id", ["", "a/b", "+", "#", "fleet-ingest", "fleet-x", "a b", "$SYS", "x" * 65]
)
def test_unsafe_device_ids_are_refused(ca, device_id):
    ca_key, ca_cert = ca
    csr = pki.load_csr(_csr_for(pki.generate_key()))
    with pytest.raises(pki.PKIError) as err:
        pki.sign_device_csr(ca_key=ca_key, ca_cert=ca_cert, csr=csr, device_id=device_id, valid_seconds=60)
    assert err.value.reason == "invalid_device_id"


def _csr_with_wrong_signature() -> bytes:
    pem = _csr_for(pki.generate_key())
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature value
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


def _csr_with_weak_rsa() -> bytes:
    # cryptography refuses to generate RSA < 1024, so sign a 1024-bit CSR.
    return _csr_for(rsa.generate_private_key(public_exponent=65537, key_size=1024))


def _csr_with_dsa() -> bytes:
    key = dsa.generate_private_key(key_size=1024)  # refused for its type; small keeps it fast
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("make_pem", "reason"),
    [
        (lambda: b"A" * 9000, "csr_too_large"),
        (lambda: "not a csr", "csr_malformed"),
        (
            lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "csr_malformed",
        ),
        (_csr_with_wrong_signature, "csr_bad_signature"),
        (_csr_with_weak_rsa, "key_type_not_allowed"),
        (_csr_with_dsa, "key_type_not_allowed"),
        (lambda: _csr_for(ec.generate_private_key(ec.SECP256K1())), "key_type_not_allowed"),
        (lambda: _csr_for(ec.generate_private_key(ec.SECP521R1())), "key_type_not_allowed"),
    ],
    ids=["too-big", "not-pem", "garbage-pem", "bad-signature", "rsa1024", "dsa", "secp256k1", "p521"],
)
def test_bad_csrs_are_refused_with_a_reason(make_pem, reason):
    with pytest.raises(pki.PKIError) as err:
        pki.load_csr(make_pem())
    assert err.value.reason == reason


def test_a_certificate_is_not_a_csr(ca):
    with pytest.raises(pki.PKIError) as err:
        pki.load_csr(pki.cert_pem(ca[1]))
    assert err.value.reason == "csr_malformed"


def test_crl_lists_revoked_serials_and_verifies(ca):
    ca_key, ca_cert = ca
    at = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    pem = pki.build_crl(
        ca_key=ca_key, ca_cert=ca_cert, revoked=[(123, at), (456, at)], next_update=dt.timedelta(hours=1)
    )
    crl = x509.load_pem_x509_crl(pem)
    assert crl.is_signature_valid(ca_cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(123).revocation_date_utc == at
    assert crl.get_revoked_certificate_by_serial_number(456) is not None
    assert crl.get_revoked_certificate_by_serial_number(789) is None
    assert crl.next_update_utc - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=59)
    empty = x509.load_pem_x509_crl(
        pki.build_crl(ca_key=ca_key, ca_cert=ca_cert, revoked=[], next_update=dt.timedelta(hours=1))
    )
    assert len(empty) == 0
    numbers = [c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in (crl, empty)]
    assert numbers[1] >= numbers[0]


def test_write_atomic_replaces_content_and_sets_mode(tmp_path):
    target = tmp_path / "crl.pem"
    pki.write_atomic(target, b"one")
    pki.write_atomic(target, "two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["crl.pem"]  # no temp file left behind


def test_enrollment_signing_is_fast(ca):
    """Enrollment throughput is benchmarked: parse + check + sign must stay around a millisecond."""
    ca_key, ca_cert = ca
    pem = _csr_for(pki.generate_key())
    n = 50
    start = time.perf_counter()
    for i in range(n):
        csr = pki.load_csr(pem)
        pki.sign_device_csr(ca_key=ca_key, ca_cert=ca_cert, csr=csr, device_id=f"cam-{i}", valid_seconds=60)
    per_op = (time.perf_counter() - start) / n
    print(f"load_csr + sign_device_csr: {per_op * 1e3:.2f} ms each")
    assert per_op < 0.05  # generous bound for a shared 2-core machine
