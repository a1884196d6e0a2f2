"""Simulated devices for the rollout benchmark: one MQTT connection speaking for N devices.

Each device verifies its offer with the shared verifier (protocol.verify_keylist +
verify_manifest; the result is cached per distinct document, since every device would
compute the same answer) and reports on up/ota; a down/cmd is answered on up/ack.
Pure Python, no Django: run as `python bench/rollout/sim.py HOST PORT ROOT_B64 MODE`.
"""

from __future__ import annotations

import sys
import threading
import time

import paho.mqtt.client as mqtt

from protocol import topics
from protocol.manifest import verify_keylist, verify_manifest
from protocol.messages import decode_down, encode, make
from protocol.signing import public_key_from_b64
from protocol.up import Ack, OtaReport, Telemetry


def main() -> None:
    host, port, root_b64, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    gates = (
        len(sys.argv) > 5 and sys.argv[5] == "gates"
    )  # after succeeded, one quality window of the new model
    root = public_key_from_b64(root_b64)
    verified: dict[tuple[str, str], int] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sim", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    states = (
        ["succeeded"]
        if mode == "final"
        else ["downloading", "verifying", "installing", "health_check", "succeeded"]
    )

    def on_message(_c, _u, message):
        parsed = topics.parse(message.topic)
        if not message.payload:
            return
        if parsed.kind == "cmd":
            cmd = decode_down("cmd", message.payload)
            ack = make(Ack, command_id=cmd.command_id, status="succeeded")
            client.publish(topics.up(parsed.device_id, "ack"), encode(ack), qos=1)
            return
        offer = decode_down("ota", message.payload)
        key = (offer.manifest["signatures"][0]["sig"], offer.keylist["signatures"][0]["sig"])
        if key not in verified:
            keylist = verify_keylist(
                offer.keylist, root_public_key=root, current_version=None, now=time.time()
            )
            manifest = verify_manifest(
                offer.manifest,
                keylist=keylist,
                installed_serial=0,
                hardware_model="cam-x1",
                agent_version="1.4.0",
                now=time.time(),
            )
            verified[key] = manifest.serial
        for state in states:
            report = make(
                OtaReport,
                deployment_id=offer.deployment_id,
                serial=verified[key],
                model=offer.manifest["signed"]["model"],
                state=state,
            )
            client.publish(topics.up(parsed.device_id, "ota"), encode(report), qos=1)
        if gates:
            end = time.time()
            window = {"model": offer.manifest["signed"]["model"], "version": offer.manifest["signed"]["version"],
                      "start": end - 120, "end": end, "frames": 600, "latency_p50_ms": 30.0,
                      "latency_p95_ms": 44.0, "fps": 5.0, "detections": {"person": 30}}  # fmt: skip
            body = make(Telemetry, samples=[{"ts": end, "cpu_pct": 40.0, "mem_pct": 50.0}], quality=[window])
            client.publish(topics.up(parsed.device_id, "telemetry"), encode(body), qos=1)

    ready = threading.Event()
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: (
        c.subscribe([(f"{topics.ROOT}/+/down/ota", 1), (f"{topics.ROOT}/+/down/cmd", 1)]),
        ready.set(),
    )
    client.connect(host, port, keepalive=60)
    client.loop_start()
    ready.wait(10)
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    client.loop_stop()


if __name__ == "__main__":
    main()
