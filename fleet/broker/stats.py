"""What a broker drops and holds, as Prometheus gauges: never a silent loss.

Mosquitto counts in $SYS topics, which each ingest replica (fleet-ingest may read them) copies
here through a StatsWatcher; the embedded broker counts in-process (it runs in the demo process,
so the web's /metrics has it).
"""

from __future__ import annotations

import logging

import paho.mqtt.client as paho
from prometheus_client import Gauge

from fleet import mqtt

log = logging.getLogger(__name__)

DROPPED = Gauge(
    "fleet_broker_messages_dropped",
    "Messages the broker dropped since it started, e.g. over a session's queue limit "
    "(Mosquitto: $SYS/broker/publish/messages/dropped)",
)
STORE_BYTES = Gauge(
    "fleet_broker_store_bytes",
    "Bytes of messages the broker holds, queued or retained (Mosquitto: $SYS/broker/store/messages/bytes)",
)
SYS_TOPICS = {
    "$SYS/broker/publish/messages/dropped": DROPPED,
    "$SYS/broker/store/messages/bytes": STORE_BYTES,
}
# Each session's queue of undelivered QoS 1 messages, unless configured (MQTT_BROKER_MAX_QUEUED_BYTES).
DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024 * 1024


class StatsWatcher:
    """A clean-session connection subscribed to the $SYS counts above, at QoS 0.

    Not the ingest's own session: a persistent session would have the broker drop (and count)
    the QoS 0 $SYS updates that arrive while the ingest is away, which is no device data lost.
    A broker without these topics (amqtt refuses the subscription) leaves the gauges alone.
    """

    def __init__(self, *, client_id: str) -> None:
        self.client_id = client_id
        self.connection: mqtt.Connection | None = None

    def start(self) -> None:
        try:
            self.connection = mqtt.connect(
                client_id=self.client_id,
                clean_start=True,
                on_connect=self._subscribe,
                on_message=self._update,
            )
        except mqtt.MqttError as exc:  # the counts are a help, not a reason to stop ingesting
            log.warning("broker statistics unavailable: %s", exc.message)

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    @staticmethod
    def _subscribe(conn: mqtt.Connection, session_present: bool) -> None:
        conn.client.subscribe([(topic, 0) for topic in SYS_TOPICS])

    @staticmethod
    def _update(conn: mqtt.Connection, message: paho.MQTTMessage) -> None:
        gauge = SYS_TOPICS.get(message.topic)
        try:
            value = float(message.payload)
        except ValueError:
            return
        if gauge is None:
            return
        if gauge is DROPPED and value > gauge._value.get():
            log.warning("the broker has dropped %d messages since it started (queue limits)", int(value))
        gauge.set(value)
