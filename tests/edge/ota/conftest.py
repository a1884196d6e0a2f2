"""OTA test rig: signing keys, tiny ONNX models built in the test, signed offers, a recording client."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_models import AGENT, HARDWARE

from edge.ota import OtaClient
from protocol.download import FILE_ORIGIN
from protocol.manifest import keylist_signed, release_signed, sign_document
from protocol.messages import OtaOffer, make
from protocol.signing import key_id, public_key_to_b64


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.state_dir = tmp_path / "device"
        self.artifacts = tmp_path / "artifacts"
        self.artifacts.mkdir()
        self.root = Ed25519PrivateKey.generate()
        self.release = Ed25519PrivateKey.generate()
        self.rogue = Ed25519PrivateKey.generate()
        self.now = time.time()
        self.reports: list[tuple[str, str | None, float | None]] = []
        self.keylist_version = 1
        self.revoked: set[str] = set()

    # --- documents -------------------------------------------------------------

    def keylist(self, *, version: int | None = None, signer: Ed25519PrivateKey | None = None,
                expires: int | None = None, extra_keys: tuple[Ed25519PrivateKey, ...] = ()) -> dict:  # fmt: skip
        keys = {}
        for key in (self.release, *extra_keys):
            kid = key_id(key.public_key())
            keys[kid] = (public_key_to_b64(key.public_key()), kid in self.revoked)
        signed = keylist_signed(
            version=version or self.keylist_version,
            expires=expires or int(self.now + 86400 * 365),
            keys=keys,
        )
        return sign_document(signed, key=signer or self.root)

    def artifact(self, data: bytes, name: str) -> Path:
        path = self.artifacts / name
        path.write_bytes(data)
        return path

    def offer(self, data: bytes, *, serial: int, signer: Ed25519PrivateKey | None = None,
              keylist: dict | None = None, url: str | None = None, **over) -> OtaOffer:  # fmt: skip
        path = self.artifact(data, f"model-{serial}.onnx")
        fields = {
            "model": "person-det",
            "version": f"2.{serial}.0",
            "serial": serial,
            "artifact_url": url or path.as_uri(),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "hardware_models": [HARDWARE],
            "min_agent_version": "1.4",
            "created": int(self.now),
            "expires": int(self.now + 86400),
        }
        fields.update(over)
        manifest = sign_document(release_signed(**fields), key=signer or self.release)
        return make(
            OtaOffer, deployment_id=f"dep-{serial}", manifest=manifest, keylist=keylist or self.keylist()
        )

    # --- device ----------------------------------------------------------------

    def report(self, state, reason=None, progress=None):
        self.reports.append((state, reason, progress))

    def states(self) -> list[str]:
        """Reported states, repeated progress reports collapsed."""
        out: list[str] = []
        for state, _, _ in self.reports:
            if not out or out[-1] != state:
                out.append(state)
        return out

    def client(self, **kwargs) -> OtaClient:
        kwargs.setdefault("grace_s", 0.0)
        kwargs.setdefault("download_origins", [FILE_ORIGIN])  # the rig's artifacts are local files
        kwargs.setdefault("download_chunk_size", 16 * 1024)
        kwargs.setdefault("download_backoff_s", 0.01)
        return OtaClient(
            self.state_dir,
            hardware_model=HARDWARE,
            agent_version=AGENT,
            root_public_key=self.root.public_key(),
            report=self.report,
            **kwargs,
        )


@pytest.fixture
def rig(tmp_path) -> Rig:
    return Rig(tmp_path)
