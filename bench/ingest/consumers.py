"""The two baselines, each run as its own process: `python -m bench.ingest.consumers raw|naive PORT CLIENT_ID N`.

Both resume a persistent MQTT 5 session (made by the orchestrator, which filled it
with N queued messages), so they drain exactly what the ingest drains. Each prints
one JSON line: {"count", "first", "last"} (monotonic seconds of the first and last message).
They connect as the ingest does: mTLS with the certificate in MQTT_CLIENT_CERT / MQTT_CLIENT_KEY,
checked against MQTT_CA_FILE, on the broker's server listener at 127.0.0.1:PORT.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SESSION_EXPIRY_S = 3600
RECEIVE_MAXIMUM = 2000  # the ingest's default window, so all consumers get the same broker behaviour


def tls_client(client_id: str | None = None) -> paho.Client:
    """A paho MQTT 5 client with the server identity from the environment (as `manage.py ingest` has)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", protocol=paho.MQTTv5)
    client.tls_set(
        ca_certs=os.environ["MQTT_CA_FILE"],
        certfile=os.environ["MQTT_CLIENT_CERT"],
        keyfile=os.environ["MQTT_CLIENT_KEY"],
    )
    return client


def connect(port: int, client_id: str, on_message) -> paho.Client:
    client = tls_client(client_id)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
    return client


def run(mode: str, port: int, client_id: str, expected: int, timeout: float = 300.0) -> dict:
    state = {"count": 0, "first": None, "last": None}
    done = threading.Event()
    save = None
    if mode == "naive":
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
        django.setup()
        from devices.models import Device
        from protocol import topics
        from telemetry.models import MetricSample

        pks = dict(Device.objects.values_list("device_id", "pk"))

        def save(message: paho.MQTTMessage) -> None:
            # What a first version would do: parse, then one ORM call per message (autocommit).
            body = json.loads(message.payload)
            s = body["samples"][0]
            MetricSample.objects.create(
                device_id=pks[topics.parse(message.topic).device_id],
                ts=dt.datetime.fromtimestamp(s["ts"], dt.UTC),
                cpu_pct=s["cpu_pct"],
                mem_pct=s["mem_pct"],
                temp_c=s.get("temp_c"),
                fps=s.get("fps"),
                inference_ms=s.get("inference_ms"),
                disk_free_mb=s.get("disk_free_mb"),
                link=s.get("link", "unknown"),
                queue_depth=s.get("queue_depth", {}),
                bytes_sent=s.get("bytes_sent", {}),
            )

    def on_message(client, userdata, message) -> None:
        now = time.monotonic()
        if save is not None:
            try:
                save(message)
            except Exception as exc:  # paho would swallow it: make the baseline fail loudly instead
                print(f"naive consumer failed: {exc!r}", file=sys.stderr, flush=True)
                os._exit(1)
        if state["first"] is None:
            state["first"] = now
        state["count"] += 1
        state["last"] = time.monotonic()
        if state["count"] >= expected:
            done.set()

    client = connect(port, client_id, on_message)
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return state


if __name__ == "__main__":
    mode, port, client_id, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    print(json.dumps(run(mode, port, client_id, expected)), flush=True)
