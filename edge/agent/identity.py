"""The device identity on disk: private key, certificate, fleet CA and the MQTT endpoint.

Layout of `<state_dir>/identity/`:

    identity.json        pointer: device id, generation, MQTT endpoint, API URL
    device-<gen>.key     EC P-256 private key, mode 0600, created with O_EXCL, never sent anywhere
    device-<gen>.crt     the certificate the server issued for that key
    ca.crt               the fleet device CA (verifies the broker too)
    pending.key          the key of a renewal CSR in flight (up/cert)

A renewal never overwrites the key or certificate in use: it writes generation n+1
and then replaces identity.json atomically, so a power cut leaves either the old or
the new identity complete. The old generation is deleted only after the agent has
connected with the new one (docs/protocol.md: "keeps the old one until that succeeds").
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.agent.errors import AgentError

KEY_MODE = 0o600


@dataclass(frozen=True)
class MqttEndpoint:
    host: str
    port: int
    tls: bool = True


@dataclass(frozen=True)
class Identity:
    """What the agent needs to connect: read-only view of identity.json plus file paths."""

    device_id: str
    generation: int
    key_file: Path
    cert_file: Path
    ca_file: Path
    mqtt: MqttEndpoint
    api_url: str | None = None
    # Where OTA artifacts may come from: the server's and its object store's origins, as the
    # server said at enrollment (an identity from before that holds none: api_url is used).
    download_origins: tuple[str, ...] = ()

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    """PEM CSR signed by `key` (proof of possession); the server decides the final subject."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Create `path` with mode 0600 from the first byte (O_EXCL: never reuse or widen an existing file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    try:
        os.write(fd, key_pem(key))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def lifetime_used(cert: x509.Certificate, *, now: dt.datetime | None = None) -> float:
    """Share of the certificate's validity period already elapsed (0..1, >1 once expired)."""
    now = now or dt.datetime.now(dt.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    total = (end - start).total_seconds()
    return 1.0 if total <= 0 else (now - start).total_seconds() / total


class IdentityStore:
    """Reads and writes the identity directory of one state dir."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.root = Path(state_dir) / "identity"

    @property
    def pointer(self) -> Path:
        return self.root / "identity.json"

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.crt"

    @property
    def pending_key_file(self) -> Path:
        return self.root / "pending.key"

    def key_file(self, generation: int) -> Path:
        return self.root / f"device-{generation}.key"

    def cert_file(self, generation: int) -> Path:
        return self.root / f"device-{generation}.crt"

    def exists(self) -> bool:
        return self.pointer.is_file()

    def ensure_dir(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def _read_pointer(self) -> dict[str, Any]:
        try:
            return json.loads(self.pointer.read_text())
        except FileNotFoundError:
            raise AgentError(
                "not_enrolled", f"no identity in {self.root}; run `python -m edge enroll`"
            ) from None
        except (OSError, ValueError) as exc:
            raise AgentError("identity_corrupt", f"{self.pointer}: {exc}") from None

    def load(self) -> Identity:
        data = self._read_pointer()
        try:
            gen = int(data["generation"])
            mqtt = MqttEndpoint(**data["mqtt"])
            return Identity(
                device_id=str(data["device_id"]),
                generation=gen,
                key_file=self.key_file(gen),
                cert_file=self.cert_file(gen),
                ca_file=self.ca_file,
                mqtt=mqtt,
                api_url=data.get("api_url"),
                download_origins=tuple(str(o) for o in data.get("download_origins") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AgentError("identity_corrupt", f"{self.pointer}: {exc}") from None

    def new_key(self, generation: int) -> ec.EllipticCurvePrivateKey:
        """A fresh key written to device-<generation>.key (enrollment: generation 1)."""
        self.ensure_dir()
        key = generate_key()
        write_private_key(self.key_file(generation), key)
        return key

    def save(
        self,
        *,
        device_id: str,
        generation: int,
        certificate_pem: str,
        ca_pem: str,
        mqtt: MqttEndpoint,
        api_url: str | None,
        download_origins: tuple[str, ...] = (),
    ) -> Identity:
        """Write the certificate and CA, then switch the pointer (the key file must already exist)."""
        if not self.key_file(generation).is_file():
            raise AgentError("key_missing", f"no key for generation {generation}")
        self._check_pair(self.key_file(generation), certificate_pem)
        write_atomic(self.cert_file(generation), certificate_pem.encode())
        write_atomic(self.ca_file, ca_pem.encode())
        pointer = {
            "device_id": device_id,
            "generation": generation,
            "mqtt": asdict(mqtt),
            "api_url": api_url,
            "download_origins": list(download_origins),
        }
        write_atomic(self.pointer, json.dumps(pointer, indent=2).encode(), mode=0o600)
        return self.load()

    @staticmethod
    def _check_pair(key_file: Path, certificate_pem: str) -> None:
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        except ValueError as exc:
            raise AgentError("bad_certificate", str(exc)) from None
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if cert.public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
            raise AgentError("bad_certificate", "the certificate is not for this device's key")

    # -- renewal -----------------------------------------------------------------------

    def start_renewal(self, device_id: str) -> str:
        """New key in pending.key (replacing an abandoned one) and its CSR; CN = device id."""
        self.ensure_dir()
        self.pending_key_file.unlink(missing_ok=True)
        key = generate_key()
        write_private_key(self.pending_key_file, key)
        return make_csr(key, device_id)

    def install_renewal(self, *, certificate_pem: str, ca_pem: str) -> Identity:
        """Install the renewed certificate as generation n+1; the old generation stays on disk."""
        current = self.load()
        if not self.pending_key_file.is_file():
            raise AgentError("no_renewal", "a certificate arrived but no renewal is pending")
        self._check_pair(self.pending_key_file, certificate_pem)
        gen = current.generation + 1
        self.key_file(gen).unlink(missing_ok=True)  # leftover of an interrupted install
        os.replace(self.pending_key_file, self.key_file(gen))
        return self.save(
            device_id=current.device_id,
            generation=gen,
            certificate_pem=certificate_pem,
            ca_pem=ca_pem,
            mqtt=current.mqtt,
            api_url=current.api_url,
            download_origins=current.download_origins,
        )

    def rollback(self, to_generation: int) -> Identity:
        """Point back at an older generation (the new certificate could not connect)."""
        data = self._read_pointer()
        data["generation"] = to_generation
        write_atomic(self.pointer, json.dumps(data, indent=2).encode(), mode=0o600)
        return self.load()

    def prune(self) -> None:
        """Delete every generation but the current one (call once it has connected)."""
        current = self.load().generation
        for path in self.root.glob("device-*.*"):
            stem = path.stem.removeprefix("device-")
            if stem.isdigit() and int(stem) != current:
                path.unlink(missing_ok=True)
