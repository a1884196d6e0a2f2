# ruff: noqa: F811 - pytest fixtures imported from live_fixtures
"""The agent enrolls through the real POST /api/v1/enroll/ (Django live server), then connects with it.

Also: the simulator enrolls each virtual device through the same endpoint with its own key.
Skipped under `-p no:django` (the endpoint needs pytest-django's live server and database).
"""

from __future__ import annotations

import json
import sys

import pytest
from agent_helpers import agent_config, next_message, running

from edge.agent.errors import AgentError
from edge.agent.identity import KEY_MODE
from edge.enroll import enroll
from edge.sim.settings import SimSettings
from edge.simulate import Simulator, http_enroller
from protocol import topics

if "pytest_django.plugin" not in sys.modules:  # run with -p no:django
    pytest.skip("needs pytest-django's live server and database", allow_module_level=True)

from live_fixtures import hardware_model, identity_pki, live_enroll, make_token, unthrottled  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live(live_enroll, embedded_broker, make_token):
    """(live server URL, broker, make_token) with the Django side set up."""
    return live_enroll, embedded_broker, make_token


def test_agent_enrolls_for_real_and_connects(live, fleet_pki, mqtt_probe, tmp_path):
    url, broker, make_token = live
    _, key = make_token(max_uses=1)
    identity = enroll(
        server_url=url, token=key, state_dir=tmp_path, serial="SN-LIVE-1", hardware_model="cam-x1"
    )
    assert identity.key_file.stat().st_mode & 0o777 == KEY_MODE
    assert (identity.mqtt.host, identity.mqtt.port) == (broker.host, broker.port)

    with pytest.raises(AgentError) as used:  # single-use token: the server's message is shown
        enroll(
            server_url=url,
            token=key,
            state_dir=tmp_path / "again",
            serial="SN-LIVE-2",
            hardware_model="cam-x1",
        )
    assert used.value.reason == "enroll_refused" and "HTTP 403" in str(used.value)

    server = mqtt_probe(broker, fleet_pki.ingest, server_listener=True)
    assert server.start()
    server.subscribe(topics.up(identity.device_id, "status"))
    with running(agent_config(tmp_path)):
        _, birth, _ = next_message(server, kind="status")
        assert birth.state == "online"


def test_simulator_enrolls_each_device_through_the_endpoint(live, tmp_path):
    url, _, make_token = live
    _, key = make_token(max_uses=5)
    sim = Simulator(
        devices=5,
        state_dir=tmp_path,
        enroll=http_enroller(url, key, hardware_model="cam-x1"),
        settings=SimSettings(hardware_model="cam-x1", telemetry_s=3600, events_per_min=0),
        enroll_threads=1,  # SQLite under the live server: concurrent enrollments lock the table
    )
    try:
        assert sim.start(timeout=60), sim.stats()
        ids = {d.device_id for d in sim.devices}
        assert len(ids) == 5
        assert len({d.identity.key_file.read_bytes() for d in sim.devices}) == 5  # a key pair per device
    finally:
        sim.stop()
    pointer = json.loads((tmp_path / "dev-00000" / "identity" / "identity.json").read_text())
    assert pointer["device_id"] in ids
