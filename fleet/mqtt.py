"""The server's one MQTT client factory and its process-wide publisher.

Every server-side MQTT connection (the ingest, the publisher that OTA, commands and
config use) is made here, from settings: TLS with the server's client certificate
(or plain TCP when MQTT_TLS is false), MQTT 5 with a fallback to 3.1.1 for brokers
that refuse it (the embedded amqtt broker), paho's callback API v2.

    from fleet import mqtt
    mqtt.publish(topics.down(device_id, "cmd"), payload)           # waits for the PUBACK
    mqtt.publish_on_commit(topics.down(device_id, "config"), payload, retain=True)  # in a service
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from django.conf import settings
from django.db import transaction
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import Counter

from fleet.errors import FleetError
from fleet.pki import INGEST_IDENTITY

log = logging.getLogger(__name__)

MQTT_V5 = paho.MQTTv5
MQTT_V311 = paho.MQTTv311
# CONNACK reason codes that mean "this broker does not speak MQTT 5": 0x84 Unsupported
# Protocol Version (v5 code) and 1 (3.1.1 "unacceptable protocol version").
_UNSUPPORTED_PROTOCOL = {132, 1}

_PUBACK_COMMAND = 0x40
_PUBACK = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id

PUBLISHED = Counter("fleet_mqtt_published_total", "Messages the server published", ["result"])
PUBLISH_WINDOW = 100  # QoS 1 messages publish_many keeps in flight: plenty for loopback and LAN round trips


class MqttError(FleetError):
    """The broker cannot be reached or did not acknowledge in time."""

    status = 503


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int
    tls: bool
    ca_file: str
    cert_file: str
    key_file: str
    protocol: str  # "auto" (5, falling back to 3.1.1), "5" or "3.1.1"
    keepalive: int

    @classmethod
    def from_settings(cls) -> BrokerConfig:
        return cls(
            host=settings.MQTT_HOST,
            port=settings.MQTT_PORT,
            tls=settings.MQTT_TLS,
            ca_file=settings.MQTT_CA_FILE,
            cert_file=settings.MQTT_CLIENT_CERT,
            key_file=settings.MQTT_CLIENT_KEY,
            protocol=getattr(settings, "MQTT_PROTOCOL", "auto"),
            keepalive=getattr(settings, "MQTT_KEEPALIVE_S", 30),
        )

    def protocols(self) -> tuple[int, ...]:
        if self.protocol in ("5", "5.0"):
            return (MQTT_V5,)
        if self.protocol in ("3.1.1", "311", "4"):
            return (MQTT_V311,)
        return (MQTT_V5, MQTT_V311)


def client_id_for(role: str) -> str:
    """A client id that names the process, so the broker log says who is connected. It starts with
    the server certificate's CN: brokers accept only "<CN>" or "<CN>-<suffix>" for that identity."""
    host = socket.gethostname()[:32]
    return f"{INGEST_IDENTITY}-{role}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


RawPublish = Callable[[bytes, bytes, int, int], None]  # (topic bytes, payload, mid, qos)


# PUBACK reason codes of MQTT 5 (0x80 and above: refused); 3.1.1 has none, its brokers drop silently.
_NOT_AUTHORIZED = 0x87


class _LeanClient(paho.Client):
    """paho's client with lean paths for incoming QoS 0/1 PUBLISH and PUBACK.

    PUBLISH: topic, payload and packet id only. For each PUBLISH paho builds an MQTTMessage, parses
    the MQTT 5 properties into a Properties object, decodes the topic for a debug log line and
    walks its topic-filter table for per-topic callbacks: about half of what a message costs the
    receiving thread, which is the ingest's ceiling (bench/README.md, "Ingest"). The ingest reads
    none of that. Anything this path does not expect (QoS 2, a short packet) goes to paho's own
    handler.

    PUBACK: paho builds a ReasonCode and a Properties object per PUBACK and calls on_publish, which
    no Fleet connection sets: most of what a wave of OTA offers cost the publisher. And it marks a
    message the broker refused (MQTT 5 reason 0x80 and above) as published; here its `rc` says so
    (MQTT_ERR_ACL_DENIED for 0x87 not authorized, MQTT_ERR_UNKNOWN for the others).
    """

    on_publish_raw: RawPublish | None = None

    def _handle_pubackcomp(self, cmd: str) -> MQTTErrorCode:
        packet: bytes = self._in_packet["packet"]
        if cmd != "PUBACK" or self.on_publish is not None or len(packet) < 2:
            return super()._handle_pubackcomp(cmd)
        mid = int.from_bytes(packet[:2], "big")
        reason = packet[2] if self._protocol == MQTT_V5 and len(packet) > 2 else 0
        with self._out_message_mutex:
            msg = self._out_messages.pop(mid, None)
            if msg is None:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if reason >= 0x80:
                denied = reason == _NOT_AUTHORIZED
                msg.info.rc = MQTTErrorCode.MQTT_ERR_ACL_DENIED if denied else MQTTErrorCode.MQTT_ERR_UNKNOWN
            msg.info._set_as_published()
            if msg.qos > 0:
                self._inflight_messages -= 1
                if self._max_inflight_messages > 0:
                    return self._update_inflight()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        publish = self.on_publish_raw
        packet: bytes = self._in_packet["packet"]
        qos = (self._in_packet["command"] & 0x06) >> 1
        if publish is None or qos == 2:
            return super()._handle_publish()
        try:
            end = 2 + int.from_bytes(packet[:2], "big")
            topic, mid = packet[2:end], 0
            if qos:
                mid, end = int.from_bytes(packet[end : end + 2], "big"), end + 2
            if self._protocol == MQTT_V5:  # skip the properties: a variable byte integer, then the bytes
                length, shift = 0, 0
                while True:
                    byte = packet[end]
                    end += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ValueError("properties length longer than 4 bytes")
                end += length
            if end > len(packet):
                raise ValueError("packet shorter than its lengths")
        except (IndexError, ValueError):
            return super()._handle_publish()  # paho refuses it the way it always does
        publish(topic, packet[end:], mid, qos)
        if qos and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class Connection:
    """One paho client with its network thread, connected to the broker with a known protocol.

    `generation` grows on every successful (re)connect: message ids (mids) are only
    valid on the connection that received them, so a consumer acknowledging after a
    reconnect must skip mids of an older generation (the broker redelivers those).
    """

    def __init__(
        self,
        *,
        config: BrokerConfig,
        protocol: int,
        client_id: str,
        clean_start: bool,
        session_expiry_s: int | None,
        receive_maximum: int | None,
        manual_ack: bool,
        on_connect: Callable[[Connection, bool], None] | None,
        on_message: Callable[[Connection, paho.MQTTMessage], None] | None,
        reconnect_min_delay: float = 1.0,
        on_publish: Callable[[Connection, bytes, bytes, int, int], None] | None = None,
    ) -> None:
        self.config = config
        self.protocol = protocol
        self.client_id = client_id
        self.generation = 0
        self.refused: int | None = None  # CONNACK failure code of the last attempt
        self._clean_start = clean_start
        self._user_on_connect = on_connect
        self._changed = threading.Condition()
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": protocol, "manual_ack": manual_ack}
        if protocol != MQTT_V5:
            kwargs["clean_session"] = clean_start
        client = _LeanClient(CallbackAPIVersion.VERSION2, **kwargs)
        if on_publish is not None:
            client.on_publish_raw = lambda topic, payload, mid, qos: on_publish(
                self, topic, payload, mid, qos
            )
        if config.tls:
            context = ssl.create_default_context(cafile=config.ca_file)
            context.load_cert_chain(config.cert_file, config.key_file)
            client.tls_set_context(context)
        client.reconnect_delay_set(min_delay=reconnect_min_delay, max_delay=10)
        # No in-flight limit in paho: publish_many keeps its own window (PUBLISH_WINDOW). paho's walks
        # its in-flight messages on every PUBACK to find the next queued one.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        if on_message is not None:
            client.on_message = lambda _c, _u, message: on_message(self, message)
        self.client = client
        self._properties: Properties | None = None
        if protocol == MQTT_V5:
            props = Properties(PacketTypes.CONNECT)
            if session_expiry_s:
                props.SessionExpiryInterval = session_expiry_s
            if receive_maximum:
                # How many unacknowledged QoS 1 messages the broker may send us: the ingest's batch window.
                props.ReceiveMaximum = min(receive_maximum, 65535)
            self._properties = props

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        code = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        with self._changed:
            if code == 0:
                self.generation += 1
                self.refused = None
            else:
                self.refused = code
            self._changed.notify_all()
        if code == 0 and self._user_on_connect is not None:
            self._user_on_connect(self, bool(getattr(flags, "session_present", False)))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._changed:
            self._changed.notify_all()

    def start(self, timeout: float) -> bool:
        """Connect and start the network thread; True once CONNACK accepted within `timeout`."""
        kwargs: dict[str, Any] = {"keepalive": self.config.keepalive}
        if self.protocol == MQTT_V5:
            kwargs["clean_start"] = self._clean_start
            kwargs["properties"] = self._properties
        self.client.connect(self.config.host, self.config.port, **kwargs)
        self.client.loop_start()
        return self.wait_connected(timeout)

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.connected and self.refused is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        return self.connected

    def ack_many(self, mids: list[int], generation: int) -> bool:
        """Acknowledge QoS 1 messages received with manual_ack, in the given order, as one write.

        False (and no acknowledgement) if the connection changed since they arrived: the
        broker redelivers them. paho 2.2 acknowledges one message per call, and each call
        wakes its network thread for a 4-byte write: a batch of a thousand costs the
        receiving thread more than the messages did. So the PUBACKs (exactly the bytes
        paho's own ack() makes, client.py _send_command_with_mid) go out in one packet
        write through the queue that ack() itself ends in.
        """
        if generation != self.generation or not self.connected:
            return False
        packet = b"".join([_PUBACK.pack(_PUBACK_COMMAND, 2, mid) for mid in mids])
        return self.client._packet_queue(_PUBACK_COMMAND, packet, 0, 1) == MQTTErrorCode.MQTT_ERR_SUCCESS

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def connect(
    *,
    client_id: str,
    clean_start: bool = True,
    session_expiry_s: int | None = None,
    receive_maximum: int | None = None,
    manual_ack: bool = False,
    on_connect: Callable[[Connection, bool], None] | None = None,
    on_message: Callable[[Connection, paho.MQTTMessage], None] | None = None,
    on_publish: Callable[[Connection, bytes, bytes, int, int], None] | None = None,
    timeout: float = 10.0,
    config: BrokerConfig | None = None,
    reconnect_min_delay: float = 1.0,
) -> Connection:
    """A connected client: MQTT 5 if the broker speaks it, else 3.1.1. Raises MqttError.

    `on_publish(conn, topic_bytes, payload, mid, qos)` instead of `on_message` takes incoming
    QoS 0/1 messages by the lean path (_LeanClient): for a receiver whose speed matters.
    """
    config = config or BrokerConfig.from_settings()
    last_error = "no protocol tried"
    for protocol in config.protocols():
        conn = Connection(
            config=config,
            protocol=protocol,
            client_id=client_id,
            clean_start=clean_start,
            session_expiry_s=session_expiry_s,
            receive_maximum=receive_maximum,
            manual_ack=manual_ack,
            on_connect=on_connect,
            on_message=on_message,
            reconnect_min_delay=reconnect_min_delay,
            on_publish=on_publish,
        )
        try:
            if conn.start(timeout):
                return conn
        except (OSError, ssl.SSLError) as exc:
            conn.client.loop_stop()
            raise MqttError(
                "mqtt_unavailable", f"MQTT broker {config.host}:{config.port} unreachable: {exc}"
            ) from exc
        refused = conn.refused
        conn.close()
        last_error = f"CONNACK {refused}" if refused is not None else "no CONNACK in time"
        # Only a refusal of the protocol version (or a broker that hangs up on a v5
        # CONNECT) moves on to 3.1.1; bad credentials are not retried.
        if refused is not None and refused not in _UNSUPPORTED_PROTOCOL:
            break
    raise MqttError(
        "mqtt_unavailable", f"MQTT broker {config.host}:{config.port} refused the connection: {last_error}"
    )


# -- the process-wide publisher ------------------------------------------------------------------

_publisher: Connection | None = None
_publisher_pid: int | None = None
_publisher_lock = threading.Lock()


def _get_publisher(timeout: float) -> Connection:
    global _publisher, _publisher_pid
    with _publisher_lock:
        # A forked worker (gunicorn, Celery prefork) must not share its parent's socket.
        if _publisher is None or _publisher_pid != os.getpid():
            _publisher = connect(client_id=client_id_for("pub"), timeout=timeout)
            _publisher_pid = os.getpid()
        publisher = _publisher
    if not publisher.connected and not publisher.wait_connected(timeout):
        raise MqttError("mqtt_unavailable", "MQTT broker is not connected (reconnecting)")
    return publisher


def publish(
    topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout: float | None = None
) -> None:
    """Publish and, for QoS 1, wait until the broker acknowledges (PUBACK). Raises MqttError.

    On a timeout the message may still sit in paho's queue and go out after a
    reconnect: delivery is at least once, which devices handle by message id.
    """
    publish_many([(topic, payload)], qos=qos, retain=retain, timeout=timeout)


def publish_many(
    messages: Sequence[tuple[str, bytes]],
    *,
    qos: int = 1,
    retain: bool = False,
    timeout: float | None = None,
) -> None:
    """Publish (topic, payload) pairs in order, up to PUBLISH_WINDOW ahead of their PUBACKs, and
    return once all are acknowledged. Raises MqttError.

    Waiting for each PUBACK before the next publish makes N messages cost N round trips to the
    broker: a wave of 3,000 OTA offers held the ingest's committer for a second. `timeout` is what
    one message may take, plus a millisecond per message for those ahead of it.
    """
    if not messages:
        return
    timeout = settings.MQTT_PUBLISH_TIMEOUT_S if timeout is None else timeout
    client = _get_publisher(timeout).client
    deadline = time.monotonic() + timeout + len(messages) / 1000
    pending: deque[tuple[str, paho.MQTTMessageInfo]] = deque()
    for topic, payload in messages:
        while len(pending) >= PUBLISH_WINDOW:
            _acknowledged(*pending.popleft(), deadline, timeout)
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            PUBLISHED.labels("error").inc()
            raise MqttError("mqtt_publish_failed", f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if qos:
            pending.append((topic, info))
    while pending:
        _acknowledged(*pending.popleft(), deadline, timeout)
    PUBLISHED.labels("ok").inc(len(messages))


def _acknowledged(topic: str, info: paho.MQTTMessageInfo, deadline: float, timeout: float) -> None:
    """Wait for one message's PUBACK (until `deadline`); MqttError if refused, failed or late."""
    try:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
    except (RuntimeError, ValueError) as exc:
        if info.rc in (MQTTErrorCode.MQTT_ERR_ACL_DENIED, MQTTErrorCode.MQTT_ERR_UNKNOWN):
            PUBLISHED.labels("refused").inc()
            raise MqttError(
                "mqtt_publish_refused",
                f"the broker refused the publish to {topic}: {paho.error_string(info.rc)}",
            ) from exc
        PUBLISHED.labels("error").inc()
        raise MqttError("mqtt_publish_failed", f"publish to {topic} failed: {exc}") from exc
    if not info.is_published():
        PUBLISHED.labels("timeout").inc()
        raise MqttError("mqtt_timeout", f"no PUBACK for {topic} within {timeout:.1f} s")


def publish_on_commit(topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
    """Publish once the current transaction commits (never for a rolled-back change).

    A failure after the commit cannot undo the change: it is logged and counted
    (fleet_mqtt_published_total{result="error"}); retained desired state (config,
    OTA offers) is republished by its owner's reconciliation.
    """
    publish_many_on_commit([(topic, payload)], qos=qos, retain=retain)


def publish_many_on_commit(
    messages: Sequence[tuple[str, bytes]], *, qos: int = 1, retain: bool = False
) -> None:
    """publish_many once the current transaction commits, with publish_on_commit's rules."""
    messages = list(messages)

    def send() -> None:
        try:
            publish_many(messages, qos=qos, retain=retain)
        except MqttError:
            log.exception(
                "publish after commit failed", extra={"topic": messages[0][0], "messages": len(messages)}
            )

    transaction.on_commit(send)


def close_publisher() -> None:
    """Disconnect the process-wide publisher (tests, shutdown)."""
    global _publisher
    with _publisher_lock:
        if _publisher is not None:
            _publisher.close()
            _publisher = None
