"""docs/automation.md as a user runs it: every example block in bash against a live server, and a client
generated from the live OpenAPI schema with openapi-python-client."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.models import ApiToken, Role
from devices.models import Device
from fleet.models import AuditEntry
from ota.models import Deployment
from tests.devices.test_identity_fixtures import identity_pki  # noqa: F401 - fixtures
from tests.factories import DeviceFactory, DeviceGroupFactory, HardwareModelFactory, UserFactory
from tests.ota.conftest import outbox, root_key_path, system  # noqa: F401 - fixtures

DOC = Path(__file__).resolve().parents[2] / "docs" / "automation.md"
EXAMPLES = dict(re.findall(r"<!-- example: (\w+) -->\s*```sh\n(.*?)```", DOC.read_text(), re.S))
PASSWORD = "correct horse battery staple"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("jq") or not shutil.which("curl"), reason="needs curl and jq"),
]


@pytest.fixture
def fleet(live_server, settings, tmp_path):
    """The live server, an admin `ci-bot` with a password, and a shell that runs doc examples in order."""
    settings.PUBLIC_URL = live_server.url
    user = UserFactory(username="ci-bot", role=Role.ADMIN)
    user.set_password(PASSWORD)
    user.save()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FLEET": live_server.url,
        "FLEET_PASSWORD": PASSWORD,
    }

    def run(*names: str) -> str:
        script = "set -euo pipefail\n" + "\n".join(EXAMPLES[n] for n in names)
        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{names}: {done.stderr}\n{done.stdout}"
        return done.stdout

    return run


def test_every_example_is_run_here():
    assert set(EXAMPLES) == {"token", "enroll", "offline", "deploy"}


def test_a_script_gets_a_token_with_its_password(fleet):
    assert fleet("token").strip() == "ci-bot is admin"
    assert AuditEntry.objects.filter(action="api_token.create", source="api").exists()


def test_a_camera_is_enrolled_with_curl_and_openssl(fleet, identity_pki, tmp_path):  # noqa: F811
    HardwareModelFactory(name="sim-cam")
    out = fleet("token", "enroll").strip().splitlines()
    assert out[0] == "ci-bot is admin"
    device = Device.objects.get(device_id=out[1])
    assert device.serial == "SN-20261201-0007" and device.state == "active"
    assert "BEGIN CERTIFICATE" in (tmp_path / "camera.crt").read_text()
    answer = json.loads(out[-1])
    assert answer["download_origins"] and answer["mqtt"]["tls"] is True


def test_offline_cameras_are_listed(fleet):
    from django.utils import timezone

    from telemetry.models import DeviceStatus

    offline, online = DeviceFactory(name="Dock door"), DeviceFactory(name="Lobby")
    now = timezone.now()
    Device.objects.filter(pk__in=[offline.pk, online.pk]).update(last_seen_at=now)
    DeviceStatus.objects.create(device=offline, online=False, since=now, reason="connection_lost")
    DeviceStatus.objects.create(device=online, online=True, since=now)
    rows, counts = fleet("token", "offline").strip().splitlines()[-2:]
    assert rows.split("\t")[:2] == [offline.device_id, "Dock door"]
    assert json.loads(counts) == {"online": 1, "offline": 1, "never_seen": 0}


def test_a_canary_deployment_is_started(fleet, outbox, root_key_path):  # noqa: F811 - fixtures
    import io

    from fleet.audit import Actor
    from ota.services import artifact_create, release_create
    from tests.ota.conftest import onnx_model_bytes

    hardware = HardwareModelFactory(name="sim-cam")
    group = DeviceGroupFactory(name="storefronts")
    for _ in range(4):
        DeviceFactory(hardware_model=hardware, groups=[group])
    artifact = artifact_create(
        actor=Actor.system("test"), name="nanodet-g", version="3.0.4", file=io.BytesIO(onnx_model_bytes()),
        hardware_models=[hardware],
    )  # fmt: skip
    release_create(actor=Actor.system("test"), artifact=artifact, hardware_models=["sim-cam"])
    out = fleet("token", "deploy").strip().splitlines()
    deployment = Deployment.objects.get()
    assert deployment.canary_count == 1 and deployment.waves == [25, 100] and out[-2] == deployment.state
    assert sum(json.loads(out[-1]).values()) == 4
    assert len(outbox.messages) == 1  # the canary's offer, and only that


def test_a_generated_client_lists_offline_cameras(live_server, tmp_path, make_user):
    """The schema is good enough to generate a typed client that works (what docs/automation.md shows)."""
    generator = Path(sys.executable).with_name("openapi-python-client")
    schema = tmp_path / "fleet-openapi.json"
    import requests

    schema.write_bytes(requests.get(f"{live_server.url}/api/schema/?format=json", timeout=30).content)
    done = subprocess.run(
        [str(generator), "generate", "--path", str(schema), "--meta", "none", "--output-path", str(tmp_path / "fleet_client")],
        capture_output=True, text=True, timeout=300, env={"PATH": f"{generator.parent}:/usr/bin:/bin"},  # its ruff
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    offline = DeviceFactory(last_seen_at="2026-01-01T00:00:00Z")
    DeviceFactory()  # never seen
    user = make_user(Role.VIEWER)
    from accounts.services import token_create
    from fleet.audit import Actor

    key = token_create(actor=Actor.system("test"), user=user, name="client").key
    script = f"""
from fleet_client import AuthenticatedClient
from fleet_client.api.devices import devices_list
from fleet_client.models import DevicesListConnectivityItem

client = AuthenticatedClient(base_url={live_server.url!r}, token={key!r}, prefix="Token")
page = devices_list.sync(client=client, connectivity=[DevicesListConnectivityItem.OFFLINE])
print(" ".join(d.device_id for d in page.results))
"""
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [offline.device_id]
    assert ApiToken.objects.filter(user=user).count() == 1
