"""The agent's MQTT link: mTLS with the enrolled identity, birth and last will, reconnects.

One network thread owns the connection. Each attempt builds a fresh paho client from the
identity on disk (so a renewed certificate is picked up by simply reconnecting) and runs
its loop until the connection ends; then it waits a full-jitter exponential backoff
(uniform(0, min(max, min * 2**n))): a thousand cameras coming back after one outage must
not reconnect in step. Nothing is queued inside paho: `publish()` refuses while offline
and the caller (the uplink drainer) keeps the item in its durable queue.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.agent.identity import Identity
from protocol import topics

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT 5: keep queued down/ messages for a week offline


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0-based)."""
    return (rng or random).uniform(0.0, min(cap, base * (2 ** min(attempt, 30))))


class MqttLink:
    def __init__(
        self,
        *,
        load_identity: Callable[[], Identity],
        birth: Callable[[], bytes],
        will: Callable[[], bytes],
        on_message: Callable[[str, bytes, bool], None],
        on_connected: Callable[[Identity], None] | None = None,
        on_connect_failed: Callable[[Identity, str], None] | None = None,
        protocol: str = "3.1.1",
        keepalive_s: int = 30,
        backoff: tuple[float, float] = (1.0, 60.0),
        host: str | None = None,
        port: int | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._load_identity = load_identity
        self._birth = birth
        self._will = will
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_connect_failed = on_connect_failed
        self._v5 = protocol == "5"
        self.keepalive_s = keepalive_s
        self._backoff = backoff
        self._host, self._port = host, port
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._generation = 0  # bumped whenever a connection ends: waiters on it give up
        self._connected = threading.Event()
        self._ended = threading.Event()  # the current connection is over
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.identity: Identity | None = None
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, *, goodbye: bytes | None = None, timeout: float = 5.0) -> None:
        """Disconnect cleanly; `goodbye` (a retained offline status) is published first if connected."""
        self._stop.set()
        if goodbye is not None and self.identity is not None:
            self.publish(topics.up(self.identity.device_id, "status"), goodbye, retain=True, timeout=timeout)
        with self._lock:
            client = self._client
        if client is not None:
            client.disconnect()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def reconnect(self) -> None:
        """Drop the connection and connect again at once (e.g. with a renewed certificate)."""
        with self._lock:
            client = self._client
        self._wake.set()
        if client is not None:
            client.disconnect()  # a clean DISCONNECT: the broker does not send the will

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- publishing --------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout: float = 10.0
    ) -> bool:
        """Publish and, for QoS 1, wait for the PUBACK. False when offline, refused or timed out."""
        with self._lock:
            client, generation = self._client, self._generation
        if client is None or not self._connected.is_set():
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        if qos == 0:
            return True
        deadline = time.monotonic() + timeout
        try:
            while not info.is_published():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._generation != generation:
                    return False
                info.wait_for_publish(min(0.1, remaining))
        except (ValueError, RuntimeError):
            return False
        return True

    # -- the network thread ------------------------------------------------------

    def _make_client(self, identity: Identity) -> mqtt.Client:
        kwargs: dict = {"client_id": identity.device_id, "reconnect_on_failure": False}
        if self._v5:
            kwargs["protocol"] = mqtt.MQTTv5
        else:
            kwargs["protocol"] = mqtt.MQTTv311
            kwargs["clean_session"] = False  # queued QoS 1 down/ messages survive a reconnect
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        client.connect_timeout = self._connect_timeout_s
        if identity.mqtt.tls:
            client.tls_set(
                ca_certs=str(identity.ca_file),
                certfile=str(identity.cert_file),
                keyfile=str(identity.key_file),
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.will_set(topics.up(identity.device_id, "status"), self._will(), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_paho_message
        client.user_data_set(identity)
        return client

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                identity = self._load_identity()
            except Exception as exc:  # identity unreadable: nothing to connect with, keep retrying
                log.error("cannot load identity: %s", exc)
                identity = None
            if identity is not None:
                self.identity = identity
                if self._attempt(identity):
                    attempt = 0
            if self._stop.is_set():
                break
            delay = full_jitter(attempt, base=self._backoff[0], cap=self._backoff[1])
            attempt += 1
            if self._wake.is_set():
                delay = 0.0  # reconnect() asked for an immediate attempt
            self._wake.clear()
            self._wake.wait(delay)
            self._wake.clear()

    def _attempt(self, identity: Identity) -> bool:
        """One connection, from connect to its end; True if the broker accepted it."""
        client = self._make_client(identity)
        host = self._host or identity.mqtt.host
        port = self._port or identity.mqtt.port
        kwargs: dict = {"keepalive": self.keepalive_s}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs.update(clean_start=False, properties=props)
        self._accepted = False
        try:
            client.connect(host, port, **kwargs)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("connect to %s:%s failed: %s", host, port, self.last_error)
            self._connect_failed(identity, self.last_error)
            return False
        # paho's own network thread (loop_start), never loop_forever on ours: with no paho thread,
        # publish() from another thread writes to the TLS socket directly, concurrently with the
        # reader, and corrupts TLS records.
        self._ended = threading.Event()
        with self._lock:
            self._client = client
        client.loop_start()
        try:
            deadline = time.monotonic() + self._connect_timeout_s
            while not self._ended.wait(0.5):
                if not self._accepted and time.monotonic() > deadline:
                    self.last_error = "no CONNACK"
                    client.disconnect()
                    deadline = float("inf")
        finally:
            client.loop_stop()
            with self._lock:
                self._client = None
                self._generation += 1
            self._connected.clear()
        if not self._accepted:
            self._connect_failed(identity, self.last_error or "connection refused")
        return self._accepted

    def _connect_failed(self, identity: Identity, reason: str) -> None:
        if self._on_connect_failed is not None:
            try:
                self._on_connect_failed(identity, reason)
            except Exception:
                log.exception("on_connect_failed callback failed")

    def _on_connect(self, client, identity: Identity, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"CONNACK {reason_code}"
            log.warning("broker refused the connection: %s", reason_code)
            client.disconnect()
            return
        self._accepted = True
        self.connects += 1
        client.subscribe(topics.device_subscription(identity.device_id), qos=1)
        # Birth first: with the will it forms the retained availability topic.
        client.publish(topics.up(identity.device_id, "status"), self._birth(), qos=1, retain=True)
        self._connected.set()
        log.info("connected to MQTT as %s", identity.device_id)
        if self._on_connected is not None:
            try:
                self._on_connected(identity)
            except Exception:
                log.exception("on_connected callback failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._ended.set()
        if was:
            self.disconnects += 1
            if not self._stop.is_set():
                log.warning("MQTT connection lost: %s", reason_code)

    def _on_paho_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(message.topic, bytes(message.payload), bool(message.retain))
        except Exception:  # a handler bug must not kill the network thread
            log.exception("handler for %s failed", message.topic)
