"""The simulator against the embedded broker: real identities, real protocol, injected failures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_helpers import local_enroller, next_message, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.sim.settings import SimSettings
from edge.simulate import Simulator
from protocol import topics
from protocol.errors import MessageError
from protocol.manifest import keylist_signed, release_signed
from protocol.messages import Command, OtaOffer, decode_up, encode, make
from protocol.signing import key_id, public_key_to_b64, sign_document

N = 20


def _offer(root: Ed25519PrivateKey, release: Ed25519PrivateKey, *, serial: int) -> OtaOffer:
    rel_pub = release.public_key()
    keylist = sign_document(
        keylist_signed(version=1, expires=int(time.time()) + 3600,
                       keys={key_id(rel_pub): (public_key_to_b64(rel_pub), False)}),
        key=root,
    )  # fmt: skip
    manifest = sign_document(
        release_signed(
            model="person-det",
            version="2.0.0",
            serial=serial,
            artifact_url="https://fleet.example.com/a/1",
            sha256="a" * 64,
            size=1000,
            hardware_models=["sim-cam"],
            min_agent_version="1.0",
            created=int(time.time()),
            expires=int(time.time()) + 3600,
        ),
        key=release,
    )
    return make(OtaOffer, deployment_id="dep-1", manifest=manifest, keylist=keylist)


@pytest.fixture
def fleet(embedded_broker, fleet_pki, tmp_path):
    root = Ed25519PrivateKey.generate()
    sim = Simulator(
        devices=N,
        state_dir=tmp_path,
        enroll=local_enroller(fleet_pki, host=embedded_broker.host, port=embedded_broker.port),
        settings=SimSettings(
            root_public_key=root.public_key(), ota_step_s=0.05, telemetry_s=1.0, events_per_min=30
        ),
        fail_health=0.1,
        seed=7,
    )
    try:
        assert sim.start(timeout=60), sim.stats()
        yield sim, root
    finally:
        sim.stop()


def test_simulated_fleet_runs_ota_with_health_failures(fleet, embedded_broker, fleet_pki, mqtt_probe):
    sim, root = fleet
    server = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert server.start()
    server.subscribe(f"{topics.ROOT}/+/up/#")
    # Telemetry and events flow without asking.
    kinds = {next_message(server, timeout=10)[0] for _ in range(3 * N)}
    assert {"telemetry", "events"} <= kinds

    offer = _offer(root, Ed25519PrivateKey.generate(), serial=5)
    for d in sim.devices:
        server.publish(topics.down(d.device_id, "ota"), encode(offer), retain=True)
    terminal = {"succeeded", "rolled_back", "failed"}
    assert wait_for(lambda: all(any(s in terminal for _, s, _ in d.stats.ota) for d in sim.devices), 30)
    final = {d.device_id: [s for _, s, _ in d.stats.ota][-1] for d in sim.devices}
    assert sorted(final.values()).count("rolled_back") == round(0.1 * N)
    assert sorted(final.values()).count("succeeded") == N - round(0.1 * N)
    first = sim.devices[0]
    assert [s for _, s, _ in first.stats.ota][:2] == ["downloading", "downloading"]

    # A replayed offer with a lower serial is refused by the manifest verifier.
    old = _offer(root, Ed25519PrivateKey.generate(), serial=4)
    server.publish(
        topics.down(first.device_id, "ota"),
        encode(make(OtaOffer, **{**_fields(old), "deployment_id": "dep-0"})),
    )
    assert wait_for(lambda: first.stats.ota[-1][0] == "dep-0", 10)
    assert first.stats.ota[-1][1:] == ("failed", "rollback")


def _fields(msg) -> dict:
    return {f: getattr(msg, f) for f in msg.__struct_fields__ if f not in ("v", "id", "ts")}


def test_commands_drops_and_bad_payloads(fleet, embedded_broker, fleet_pki, mqtt_probe):
    sim, _ = fleet
    dev = sim.devices[3]
    server = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert server.start()
    server.subscribe(f"{topics.ROOT}/{dev.device_id}/up/#")
    cmd = make(
        Command, command_id="c-1", name="set_log_level", args={"level": "debug"}, expires=time.time() + 60
    )
    server.publish(topics.down(dev.device_id, "cmd"), encode(cmd))
    _, ack, _ = next_message(server, kind="ack", where=lambda m: m.status == "succeeded")
    assert ack.result == {"log_level": "debug"}
    # A simulated camera records no clips: upload_clip fails with the agent's reason.
    clip = make(
        Command, command_id="c-2", name="upload_clip", args={"event_id": "ev-1"}, expires=time.time() + 60
    )
    server.publish(topics.down(dev.device_id, "cmd"), encode(clip))
    _, failed, _ = next_message(
        server, kind="ack", where=lambda m: m.command_id == "c-2" and m.status != "acknowledged"
    )
    assert (failed.status, failed.detail) == ("failed", "no clip kept for event ev-1")

    sim.call(dev.go_offline, 0.5)
    _, will, _ = next_message(server, kind="status", where=lambda m: m.state == "offline", timeout=15)
    assert will.reason == "connection_lost"
    assert next_message(server, kind="status", where=lambda m: m.state == "online", timeout=15)
    assert dev.stats.connects == 2

    sim.call(dev.send_bad_payload)
    deadline = time.monotonic() + 10
    bad = None
    while bad is None and time.monotonic() < deadline:
        raw = server.messages.get(timeout=10)
        if raw.topic.endswith("/events"):
            try:
                decode_up("events", raw.payload)
            except MessageError as exc:  # the server's ingest dead-letters this
                bad = exc
    assert bad is not None and bad.reason in {"bad_json", "unknown_version", "schema"}


def test_cameras_watching_real_footage_report_what_the_detector_found(
    embedded_broker, fleet_pki, mqtt_probe, tmp_path
):
    """The demo's cameras: NanoDet-g (one shared session) on real clips; the events carry the
    detector's labels and thumbnails, telemetry its sampling rate and time, and the bytes sent."""
    from edge.sim.vision import SharedVision
    from edge.vision.models import default_model_path

    footage = Path(__file__).resolve().parents[2] / "footage"
    vision = SharedVision(model_path=default_model_path("fp32"))
    sim = Simulator(
        devices=2,
        state_dir=tmp_path,
        enroll=local_enroller(fleet_pki, host=embedded_broker.host, port=embedded_broker.port),
        settings=SimSettings(telemetry_s=1.0, first_watch_s=(0.1, 0.2), watch_every_s=3600),
        serials=["SHOP-1", "TABLE-1"],
        clips=[footage / "store-aisle.mp4", footage / "bottle-hand.mp4"],  # three shoppers; a hand, no one
        vision=vision,
        failing={1},
    )
    server = mqtt_probe(embedded_broker, fleet_pki.ingest, server_listener=True)
    assert server.start()
    server.subscribe(f"{topics.ROOT}/+/up/#")
    try:
        assert sim.start(timeout=60), sim.stats()
        shop, table = sim.devices
        assert (tmp_path / "SHOP-1").is_dir() and table.fails_health and not shop.fails_health
        ends = []
        while len(ends) < 3:
            _, msg, raw = next_message(server, kind="events", timeout=30)
            assert topics.parse(raw.topic).device_id == shop.device_id  # nothing on the table clip
            ends += [e for e in msg.events if e.end is not None]
        assert {e.label for e in ends} == {"person"} and all(e.thumbnail for e in ends)
        assert wait_for(lambda: vision.episodes == 2, 30)
        _, telemetry, _ = next_message(
            server,
            kind="telemetry",
            where=lambda m: m.samples[0].bytes_sent.get("event") and m.samples[0].fps,
            timeout=10,
        )
        sample = telemetry.samples[0]
        assert 4.5 <= sample.fps <= 5.5 and sample.inference_ms > 0  # the agent's 5 fps sampling
        assert shop.stats.events == 3 and table.stats.events == 0
    finally:
        sim.stop()
