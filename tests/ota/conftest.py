"""OTA fixtures: keys, a tiny ONNX model, releases, devices, captured offers and simulated devices."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

import pytest
from django.utils import timezone

from fleet.audit import Actor
from protocol.down import OtaOffer
from protocol.manifest import KeyList, Manifest, verify_keylist, verify_manifest
from protocol.messages import decode_down, make
from protocol.signing import public_key_from_b64
from protocol.up import OtaReport
from tests.factories import DeviceFactory, HardwareModelFactory, SiteFactory


def onnx_model_bytes(*, size: int = 8, labels: str = "person,car") -> bytes:
    """A valid one-node ONNX model (Relu on [1, 3, size, size]) built in memory: no download."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.helper.set_model_props(model, {"labels": labels})
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(autouse=True)
def _local_store(settings, tmp_path):
    settings.STORAGE_BACKEND = "local"
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def system() -> Actor:
    return Actor.system("test")


@pytest.fixture
def root_key_path(db, tmp_path, system):
    from ota.services import keys_init

    path = tmp_path / "offline" / "root.pem"
    path.parent.mkdir()
    keys_init(actor=system, root_out=path)
    return path


@dataclass
class Outbox:
    """Offers the services publish. Captured at once: the test's own transaction never commits."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def for_device(self, device_id: str) -> list[bytes]:
        return [p for t, p in self.messages if t == f"fleet/v1/devices/{device_id}/down/ota"]

    def offers(self, device_id: str) -> list[OtaOffer]:
        return [decode_down("ota", p) for p in self.for_device(device_id) if p]  # type: ignore[misc]

    def clear(self) -> None:
        self.messages.clear()


@pytest.fixture
def outbox(monkeypatch) -> Outbox:
    box = Outbox()

    def send(messages: list[tuple[str, bytes]]) -> None:
        box.messages.extend(messages)

    monkeypatch.setattr("ota.services.offers.send", send)
    return box


@pytest.fixture
def hardware(db):
    return HardwareModelFactory(name="cam-x1")


@pytest.fixture
def artifact_factory(db, system, hardware):
    from ota.services import artifact_create

    def make_artifact(version: str = "1.0.0", name: str = "person-det", hw=None):
        return artifact_create(
            actor=system,
            name=name,
            version=version,
            file=io.BytesIO(onnx_model_bytes()),
            hardware_models=[hw or hardware],
        )

    return make_artifact


@pytest.fixture
def release_factory(root_key_path, artifact_factory, system, hardware):
    from ota.services import release_create

    def make_release(version: str = "1.0.0", **kwargs):
        artifact = artifact_factory(version)
        return release_create(actor=system, artifact=artifact, hardware_models=[hardware.name], **kwargs)

    return make_release


@pytest.fixture
def fleet_devices(db, hardware):
    """n active, online devices of the release's hardware (site in Europe/Berlin)."""

    def make_devices(n: int, *, online: bool = True, site=None):
        site = site or SiteFactory(timezone="Europe/Berlin")
        seen = timezone.now() if online else None
        return [DeviceFactory(hardware_model=hardware, site=site, last_seen_at=seen) for _ in range(n)]

    return make_devices


class SimDevice:
    """A device's OTA side, as the edge agent does it: verify the offer with the shared verifier, report."""

    def __init__(self, device_id: str, *, root_public_b64: str, hardware: str = "cam-x1", installed: int = 0):
        self.device_id = device_id
        self.root = public_key_from_b64(root_public_b64)
        self.hardware = hardware
        self.installed = installed
        self.keylist_version: int | None = None

    def verify(self, offer: OtaOffer, now: dt.datetime | None = None) -> Manifest:
        now = now or timezone.now()
        keylist: KeyList = verify_keylist(
            offer.keylist, root_public_key=self.root, current_version=self.keylist_version, now=now
        )
        self.keylist_version = keylist.version
        return verify_manifest(
            offer.manifest,
            keylist=keylist,
            installed_serial=self.installed,
            hardware_model=self.hardware,
            agent_version="1.4.0",
            now=now,
        )

    def report(
        self, offer: OtaOffer, state: str, *, serial: int | None = None, reason: str | None = None
    ) -> OtaReport:
        serial = serial if serial is not None else offer.manifest["signed"]["serial"]
        if state == "succeeded":
            self.installed = serial
        return make(
            OtaReport,
            deployment_id=offer.deployment_id,
            serial=serial,
            model=offer.manifest["signed"]["model"],
            state=state,
            reason=reason,
        )


@pytest.fixture
def sim(root_key_path):
    from ota.models import KeyRole, SigningKey

    root_b64 = SigningKey.objects.get(role=KeyRole.ROOT).public_key

    def make_sim(device_id: str, **kwargs) -> SimDevice:
        return SimDevice(device_id, root_public_b64=root_b64, **kwargs)

    return make_sim
