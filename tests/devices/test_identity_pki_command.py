"""`manage.py pki init` and `manage.py broker_config`: files, encryption, idempotence, --force."""

from __future__ import annotations

import io

import pytest
from cryptography import x509
from django.core.management import CommandError, call_command

from fleet import broker_runtime, pki


@pytest.fixture
def pki_dir(settings, tmp_path):
    settings.PKI_DIR = tmp_path / "pki"
    settings.MQTT_DEVICE_HOST = "cameras.example.net"
    settings.MQTT_BROKER_SANS = ["broker.internal", "10.0.0.5"]
    broker_runtime.reset()
    yield settings.PKI_DIR
    broker_runtime.reset()


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_init_makes_an_encrypted_ca_a_broker_certificate_and_the_server_identities(pki_dir, settings):
    _run("pki", "init")
    files = broker_runtime.pki_files()
    assert all(p.exists() for p in files.all())
    assert b"ENCRYPTED" in files.ca_key.read_bytes() and files.ca_key.stat().st_mode & 0o077 == 0
    with pytest.raises(pki.PKIError):
        pki.load_private_key(files.ca_key.read_bytes(), b"wrong passphrase")
    ca_key, ca_cert = broker_runtime.signing_ca()
    assert ca_key.curve.name == "secp256r1"
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    broker = pki.load_certificate(files.broker_cert.read_bytes())
    broker.verify_directly_issued_by(ca_cert)
    sans = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"cameras.example.net", "broker.internal"} <= set(sans.get_values_for_type(x509.DNSName))
    assert "10.0.0.5" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    for identity, cert_file in (
        (pki.INGEST_IDENTITY, files.ingest_cert),
        (pki.ADMIN_IDENTITY, files.admin_cert),
    ):
        cert = pki.load_certificate(cert_file.read_bytes())
        assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == identity


def test_init_is_idempotent_and_force_replaces_the_ca(pki_dir):
    _run("pki", "init")
    files = broker_runtime.pki_files()
    before = {p: p.read_bytes() for p in files.all()}
    assert "nothing changed" in _run("pki", "init")
    assert {p: p.read_bytes() for p in files.all()} == before

    files.admin_cert.unlink()  # a missing file is issued again by the same CA (the server CA's)
    _run("pki", "init")
    assert files.ca_key.read_bytes() == before[files.ca_key]
    assert files.server_ca_key.read_bytes() == before[files.server_ca_key]
    pki.load_certificate(files.admin_cert.read_bytes()).verify_directly_issued_by(
        pki.load_certificate(files.server_ca_cert.read_bytes())
    )

    _run("pki", "init", "--force")
    assert files.ca_key.read_bytes() != before[files.ca_key]


def test_init_refuses_a_ca_key_it_cannot_open(pki_dir, settings):
    _run("pki", "init")
    settings.PKI_CA_PASSPHRASE = "not the passphrase"
    with pytest.raises(CommandError, match="cannot open the existing CA"):
        _run("pki", "init")


@pytest.mark.django_db
def test_broker_config_writes_config_acl_dynsec_and_a_current_crl(pki_dir, settings, tmp_path):
    from fleet.broker import mosquitto

    if mosquitto.find_dynsec_plugin() is None:
        pytest.skip("mosquitto_dynamic_security.so not installed")
    _run("pki", "init")
    settings.MQTT_BROKER = "mosquitto"
    settings.MQTT_DEVICE_PORT, settings.MQTT_PORT = 18883, 18884
    settings.MQTT_SERVER_BIND = "10.1.2.3"
    _run("broker_config", "--dir", str(tmp_path / "mq"))
    conf = (tmp_path / "mq" / "mosquitto.conf").read_text()
    assert "listener 18884 10.1.2.3" in conf and "use_username_as_clientid true" in conf
    assert "pattern write fleet/v1/devices/%u/up/#" in (tmp_path / "mq" / "acl").read_text()
    assert (tmp_path / "mq" / "dynamic-security.json").exists()
    crl = x509.load_pem_x509_crl((tmp_path / "mq" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(broker_runtime.signing_ca()[1].public_key())
    assert len(list(crl)) == 0


def test_broker_config_refuses_one_port_for_both_listeners(pki_dir, settings):
    settings.MQTT_PORT = settings.MQTT_DEVICE_PORT
    with pytest.raises(CommandError, match="MQTT_PORT"):
        _run("broker_config")


def test_server_identities_come_from_the_server_ca_and_old_ones_are_reissued(pki_dir, settings):
    """The broker's server listener trusts only the server CA: `pki init` issues fleet-ingest and
    fleet-admin from it, and reissues ones an older layout signed with the device CA."""
    from cryptography.exceptions import InvalidSignature

    _run("pki", "init")
    files = broker_runtime.pki_files()
    device_ca = pki.load_certificate(files.ca_cert.read_bytes())
    server_ca = pki.load_certificate(files.server_ca_cert.read_bytes())
    for cert_file in (files.ingest_cert, files.admin_cert):
        pki.load_certificate(cert_file.read_bytes()).verify_directly_issued_by(server_ca)
        with pytest.raises((InvalidSignature, ValueError)):
            pki.load_certificate(cert_file.read_bytes()).verify_directly_issued_by(device_ca)
    pki.load_certificate(files.broker_cert.read_bytes()).verify_directly_issued_by(device_ca)

    # An ingest certificate from the old layout (device CA) is replaced on the next `pki init`.
    ca_key = pki.load_private_key(files.ca_key.read_bytes(), settings.PKI_CA_PASSPHRASE.encode())
    key, old = pki.issue_client_cert(
        ca_key=ca_key, ca_cert=device_ca, common_name=pki.INGEST_IDENTITY, valid_days=1
    )
    pki.write_atomic(files.ingest_key, pki.private_key_pem(key), mode=0o600)
    pki.write_atomic(files.ingest_cert, pki.cert_pem(old))
    assert "fleet-ingest (server CA)" in _run("pki", "init")
    pki.load_certificate(files.ingest_cert.read_bytes()).verify_directly_issued_by(server_ca)
