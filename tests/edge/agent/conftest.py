"""Fixtures of the agent tests that talk to a broker."""

from __future__ import annotations

import pytest
from agent_helpers import make_identity

from protocol import topics


@pytest.fixture
def device(embedded_broker, fleet_pki, mqtt_probe, tmp_path):
    """(identity, server probe): a device identity for the embedded broker, and a probe on its server
    listener that sees everything the device publishes."""
    ident = make_identity(fleet_pki, tmp_path, host=embedded_broker.host, port=embedded_broker.port)
    server = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert server.start(), server.failure
    server.subscribe(f"{topics.ROOT}/{ident.device_id}/up/#")
    return ident, server
