# ruff: noqa: F401 - pytest fixtures re-exported for the live tests, requested by name
"""The Django side of the agent's live tests: the enrollment fixtures and the live server, with
enrolling devices told to use the embedded broker. Import it after skipping under `-p no:django`."""

from __future__ import annotations

import pytest

from tests.devices.test_identity_fixtures import hardware_model, identity_pki, make_token, unthrottled


@pytest.fixture
def live_enroll(request, embedded_broker, settings) -> str:
    """The live server's URL, its enrollment answers pointing at the embedded broker."""
    for name in ("identity_pki", "unthrottled", "hardware_model"):
        request.getfixturevalue(name)
    settings.MQTT_DEVICE_HOST, settings.MQTT_DEVICE_PORT = embedded_broker.host, embedded_broker.port
    return request.getfixturevalue("live_server").url
