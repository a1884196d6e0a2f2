"""amqtt 0.12 made into a Fleet broker: certificate identities and the acl.py rules.

Out of the box amqtt 0.12 leaves holes a Fleet broker must close (FACTS.md); each
fix below names the hole:
- TLS is CERT_OPTIONAL, and the session named by the client id is looked up, taken
  over or deleted *before* any auth plugin runs: a cert-less client or another
  device could steal or cut off a device's session. -> CERT_REQUIRED, and the
  connection's own certificate is checked (CN = client id, not revoked) right
  after CONNECT is parsed, before the session table is touched.
- A will message skips the publish ACL. -> the will topic is checked at CONNECT.
- Keep-alive is not enforced. -> the read timeout (1.5 x keep-alive) closes the link.
- On connect, retained messages of *every* broker-wide subscription are replayed
  to the new client. -> only its own subscriptions, each message through the ACL.
- No kick API. -> `kick()` stops the handlers from the session table.
- Messages a client published (and was PUBACKed for) just before it disconnected are
  dropped with its connection. -> delivered before the disconnect is handled.
- A QoS 1 delivery is forgotten after 5 s without a PUBACK. -> FleetProtocolHandler.
- A disconnected persistent session queues without bound (memory). -> at most
  `max_queued_bytes` per session, like Mosquitto's max_queued_bytes; what does not fit is
  dropped, logged and counted (fleet.broker.stats.DROPPED), never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import Callable
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import OUTGOING, OutgoingApplicationMessage, Session
from amqtt.utils import format_client_message, gen_client_id

from fleet.broker import acl, stats

log = logging.getLogger(__name__)

# A client asking for no keep-alive (0) or a longer one gets this many seconds.
MAX_KEEPALIVE = 300


def session_identity(session: Session | None) -> acl.Identity | None:
    """The identity FleetBroker admitted this session as (None: never admitted)."""
    return getattr(session, "fleet_identity", None) if session is not None else None


def peer_common_name(peer_cert: dict[str, Any]) -> str | None:
    """The single subject CN of a verified peer certificate (ssl.getpeercert() form), else None."""
    cns = [value for rdn in peer_cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    return cns[0] if len(cns) == 1 else None


class FleetAuthPlugin(BaseAuthPlugin):
    """Accepts a session only if FleetBroker admitted it and its certificate still names that identity."""

    async def authenticate(self, *, session: Session) -> bool:
        identity = session_identity(session)
        if identity is None or session.ssl_object is None:
            return False
        cert = session.ssl_object.getpeercert()
        return bool(cert) and peer_common_name(cert) == identity.name


class FleetTopicPlugin(BaseTopicPlugin):
    """The acl.py rules for SUBSCRIBE, PUBLISH and every delivery (RECEIVE)."""

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        identity = session_identity(session)
        if identity is None or not topic:
            return False
        if action == Action.SUBSCRIBE:
            return acl.may_subscribe(identity, topic)
        if action == Action.PUBLISH:
            return acl.may_publish(identity, topic)
        if action == Action.RECEIVE:
            return acl.may_receive(identity, topic)
        return False


class FleetProtocolHandler(BrokerProtocolHandler):
    """amqtt's per-connection handler, with QoS 1 delivery that keeps a message until it is acknowledged.

    amqtt 0.12 waits 5 s for a PUBACK and then forgets the message, and on reconnect gives a
    redelivery 10 s: a subscriber that acknowledges after its database commit (the ingest) lost
    whatever took longer. It also sends a reconnecting session's whole queue at once, so a large
    backlog runs out of packet ids. Here a QoS 1 message leaves the session only with its PUBACK
    (on a disconnect it stays in flight for the next connection, as MQTT 3.1.1 wants), at most
    MAX_INFLIGHT are in flight per connection, and one that waited for a slot on a connection that
    has closed goes back to the session's queue.
    """

    MAX_INFLIGHT = 1000
    _closing: asyncio.Future[None] | None = None  # keeps the close task referenced
    _window: asyncio.Semaphore | None = None
    _retrying: set[asyncio.Task] | None = None

    def handle_read_timeout(self) -> None:
        # Nothing heard for 1.5 x keep-alive [MQTT-3.1.2-24]: drop the link. The reader
        # then sees EOF, so the will is published as for any abnormal disconnect.
        if self.writer is not None and self._closing is None:
            self._closing = asyncio.ensure_future(self.writer.close())

    def _open(self) -> bool:
        return self.session is not None and self.session.transitions.is_connected() and self._closing is None

    async def mqtt_publish(
        self,
        topic: str,
        data: bytes | bytearray,
        qos: int | None,
        retain: bool,
        ack_timeout: int | None = None,
    ) -> OutgoingApplicationMessage | None:
        if qos != QOS_1:
            return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        if self._window is None:
            self._window = asyncio.Semaphore(self.MAX_INFLIGHT)
        async with self._window:
            session = self.session
            if not self._open():
                if session is not None and not session.clean_session:
                    session.retained_messages.put_nowait(RetainedApplicationMessage(None, topic, data, qos))
                    queued = getattr(session, "fleet_queued_bytes", 0)
                    session.fleet_queued_bytes = queued + len(data) + len(topic)  # type: ignore[attr-defined]
                return None
            return await super().mqtt_publish(topic, data, qos, retain, None)

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        if app_message.direction != OUTGOING or self.session is None:
            await super()._handle_qos1_message_flow(app_message)
            return
        packet_id = app_message.packet_id
        self.session.inflight_out[packet_id] = app_message
        dup = app_message.publish_packet is not None  # a redelivery after a reconnect
        waiter: asyncio.Future = asyncio.get_running_loop().create_future()
        self._puback_waiters[packet_id] = waiter
        try:
            app_message.publish_packet = app_message.build_publish_packet(dup=dup)
            await self._send_packet(app_message.publish_packet)
            app_message.puback_packet = await waiter  # cancelled when the connection stops
        finally:
            self._puback_waiters.pop(packet_id, None)
        self.session.inflight_out.pop(packet_id, None)

    async def _retry_deliveries(self) -> None:
        # Resend what the last connection left unacknowledged, without a deadline and without
        # holding up start() (amqtt awaited them here with 10 s each).
        if self.session is None:
            return
        self._retrying = set()
        for message in list(self.session.inflight_out.values()):
            task = asyncio.ensure_future(self._handle_message_flow(message))
            self._retrying.add(task)
            task.add_done_callback(self._retrying.discard)


class _SnapshotDict(dict):
    """amqtt 0.12 iterates its subscription table across awaits (broadcast, retained delivery on
    connect) while other sessions subscribe: "dictionary changed size during iteration" kills that
    broadcast, so the message is lost (360 times while 1,000 simulated devices connected). Iterating
    over a snapshot delivers to the subscriptions that existed when the broadcast began, as a broker should."""

    def __iter__(self):
        return iter(list(dict.keys(self)))

    def items(self):
        return list(dict.items(self))


class FleetBroker(Broker):
    """amqtt Broker with certificate identities; see the module docstring for what it changes."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        is_revoked: Callable[[int], bool],
        max_keepalive: int = MAX_KEEPALIVE,
        max_queued_bytes: int = stats.DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        super().__init__(config)
        self._subscriptions = _SnapshotDict()
        self._is_revoked = is_revoked
        self._max_keepalive = max_keepalive
        self._max_queued_bytes = max_queued_bytes

    @staticmethod
    def _create_ssl_context(listener: Any) -> ssl.SSLContext:
        context = Broker._create_ssl_context(listener)
        context.verify_mode = ssl.CERT_REQUIRED
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    async def _refusal(self, session: Session) -> str | None:
        """Why this CONNECT must be refused, or None; sets the session's identity when admitted."""
        if session.ssl_object is None:
            return "no TLS"
        cert = session.ssl_object.getpeercert()
        if not cert:
            return "no client certificate"
        common_name = peer_common_name(cert)
        identity = acl.identity_for(common_name, session.client_id or "") if common_name else None
        if identity is None:
            return f"certificate CN {common_name!r} may not use client id {session.client_id!r}"
        try:
            serial = int(cert["serialNumber"], 16)
            revoked = await asyncio.get_running_loop().run_in_executor(None, self._is_revoked, serial)
        except Exception:  # fail closed: an unanswered revocation check refuses
            log.exception("revocation check failed for %s", common_name)
            return "revocation check failed"
        if revoked:
            return f"certificate {serial:x} of {common_name} is revoked"
        if session.will_flag and not acl.may_publish(identity, session.will_topic or ""):
            return f"will topic {session.will_topic!r} not allowed"
        session.fleet_identity = identity  # type: ignore[attr-defined]
        session.username = identity.name
        return None

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        # Mirrors amqtt 0.12.1 Broker._initialize_client_session with the identity
        # check inserted before the session lookup (the takeover hole).
        try:
            handler, client_session = await FleetProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except AMQTTError as exc:
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            with contextlib.suppress(OSError):
                await writer.close()
            raise MQTTError(exc) from exc
        except (NoDataError, OSError) as exc:  # OSError: amqtt's own refusals may meet a reset peer
            raise AMQTTError(exc) from exc

        refusal = await self._refusal(client_session)
        if refusal is not None:
            log.warning(
                "refused %s: %s", format_client_message(address=remote_address, port=remote_port), refusal
            )
            # The client may reset as soon as it reads the CONNACK; the refusal stands either way,
            # and only MQTTError lets amqtt release the listener's connection slot.
            with contextlib.suppress(OSError):
                await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                await writer.close()
            raise MQTTError(refusal)

        keep_alive = client_session.keep_alive
        if keep_alive <= 0 or keep_alive > self._max_keepalive:
            keep_alive = self._max_keepalive
        client_session.keep_alive = math.ceil(keep_alive * 1.5)

        if client_session.clean_session:
            if client_session.client_id:
                # amqtt drops the old session from the table but leaves its connection
                # up, out of kick()'s reach; the spec says close it [MQTT-3.1.4-2].
                await self._close_connection(client_session.client_id)
                await self._delete_session(client_session.client_id)
            else:  # pragma: no cover - identity_for refuses an empty client id
                client_session.client_id = gen_client_id()
            client_session.parent = 0
        elif client_session.client_id in self._sessions:
            existing, _ = self._sessions[client_session.client_id]
            for attr in (
                "will_flag",
                "will_message",
                "will_topic",
                "will_qos",
                "will_retain",
                "keep_alive",
                "username",
                "password",
                "ssl_object",
                "fleet_identity",
            ):
                setattr(existing, attr, getattr(client_session, attr))
            client_session = existing
            client_session.parent = 1
        else:
            client_session.parent = 0
        return handler, client_session

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        # amqtt 0.12 calls this on connect for every filter anyone subscribed to.
        topic_filter, qos = subscription
        holders = self._subscriptions.get(topic_filter, ())
        if all(s.client_id != session.client_id for s, _ in holders):
            return
        identity = session_identity(session)
        handler = self._get_handler(session)
        if identity is None or handler is None:
            return
        tasks = [
            asyncio.ensure_future(
                handler.mqtt_publish(
                    retained.topic, retained.data, min(qos, retained.qos or qos), retain=True
                )
            )
            for topic, retained in list(self._retained_messages.items())
            if self._matches(topic, topic_filter) and acl.may_receive(identity, topic)
        ]
        if tasks:
            await asyncio.wait(tasks)

    async def _client_message_loop(self, client_session: Session, handler: BrokerProtocolHandler) -> None:
        # Mirrors amqtt 0.12.1 Broker._client_message_loop, with one change: amqtt PUBACKs a QoS 1
        # PUBLISH when it queues it for delivery, and when the client disconnects it stopped with
        # the queue unread, so a camera that published and hung up lost what it had been promised
        # (800 of 2,000 messages here). Now what is queued is broadcast, in order, before the
        # disconnect is handled.
        disconnect_waiter = asyncio.ensure_future(handler.wait_disconnect())
        subscribe_waiter = asyncio.ensure_future(handler.get_next_pending_subscription())
        unsubscribe_waiter = asyncio.ensure_future(handler.get_next_pending_unsubscription())
        wait_deliver: asyncio.Future | None = asyncio.ensure_future(handler.mqtt_deliver_next_message())
        connected = True
        while connected:
            try:
                done, _ = await asyncio.wait(
                    [disconnect_waiter, subscribe_waiter, unsubscribe_waiter, wait_deliver],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if subscribe_waiter in done:
                    await self._handle_subscription(client_session, handler, subscribe_waiter)
                    subscribe_waiter = asyncio.ensure_future(handler.get_next_pending_subscription())
                if unsubscribe_waiter in done:
                    await self._handle_unsubscription(client_session, handler, unsubscribe_waiter)
                    unsubscribe_waiter = asyncio.ensure_future(handler.get_next_pending_unsubscription())
                if wait_deliver in done:
                    if not await self._handle_message_delivery(client_session, handler, wait_deliver):
                        break
                    wait_deliver = None
                if disconnect_waiter in done:
                    await self._deliver_the_rest(client_session, handler, wait_deliver)
                    wait_deliver = None
                    await self._handle_disconnect(client_session, handler, disconnect_waiter)
                    connected = False
                elif wait_deliver is None:
                    wait_deliver = asyncio.ensure_future(handler.mqtt_deliver_next_message())
            except asyncio.CancelledError:
                break
        pending_waiters = [disconnect_waiter, subscribe_waiter, unsubscribe_waiter, wait_deliver]
        for waiter in filter(None, pending_waiters):
            waiter.cancel()
        await asyncio.gather(*filter(None, pending_waiters), return_exceptions=True)

    async def _deliver_the_rest(
        self, client_session: Session, handler: BrokerProtocolHandler, wait_deliver: asyncio.Future | None
    ) -> None:
        """Broadcast, in order, what the client published before it went away."""
        if wait_deliver is not None:
            # A pending queue get gives up without taking an item; one that got one returns it.
            wait_deliver.cancel()
            await asyncio.gather(wait_deliver, return_exceptions=True)
            taken = None if wait_deliver.cancelled() or wait_deliver.exception() else wait_deliver.result()
            if taken is not None and not await self._handle_message_delivery(
                client_session, handler, wait_deliver
            ):
                return
        queued = client_session.delivered_message_queue
        while not queued.empty():
            message: asyncio.Future = asyncio.get_running_loop().create_future()
            message.set_result(queued.get_nowait())
            if not await self._handle_message_delivery(client_session, handler, message):
                return

    async def _retain_broadcast_message(
        self, broadcast: dict[str, Any], qos: int, target_session: Session
    ) -> None:
        # A message for a disconnected persistent session: queued within the session's byte budget.
        size = len(broadcast["data"] or b"") + len(broadcast["topic"] or "")
        queued = getattr(target_session, "fleet_queued_bytes", 0)
        if queued + size > self._max_queued_bytes:
            stats.DROPPED.inc()
            if not getattr(target_session, "fleet_dropping", False):
                target_session.fleet_dropping = True  # type: ignore[attr-defined]
                log.warning(
                    "queue of %s is full (%d bytes): dropping messages for it",
                    target_session.client_id,
                    queued,
                )
            return
        target_session.fleet_queued_bytes = queued + size  # type: ignore[attr-defined]
        await super()._retain_broadcast_message(broadcast, qos, target_session)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        # Reconnected: amqtt hands the whole queue to the connection, so the budget is free again.
        session.fleet_queued_bytes = 0  # type: ignore[attr-defined]
        session.fleet_dropping = False  # type: ignore[attr-defined]
        await super()._publish_session_retained_messages(session)

    async def _close_connection(self, client_id: str) -> None:
        session, handler = self._sessions.get(client_id, (None, None))
        if session is not None and handler is not None and session.transitions.is_connected():
            await handler.handle_connection_closed()
            await handler.stop()

    async def kick(self, identity_name: str) -> int:
        """Disconnect and forget every session of this identity (a device id, or a server CN); returns how many."""
        victims = [
            client_id
            for client_id, (session, _) in self._sessions.items()
            if (ident := session_identity(session)) is not None and ident.name == identity_name
        ]
        for client_id in victims:
            await self._close_connection(client_id)
            # Queued messages and subscriptions of a revoked identity are not kept.
            await self._cleanup_session(client_id)
        return len(victims)
