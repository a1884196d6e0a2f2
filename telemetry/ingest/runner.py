"""The ingest loop: MQTT in, batches committed, acknowledgements out.

paho's network thread only queues each PUBLISH. This loop takes up to
INGEST_BATCH_MAX messages or INGEST_BATCH_MS, commits them (ingest.services) and
only then acknowledges them (paho manual_ack): a crash at any point leaves the
unacknowledged messages in the broker's persistent session, which redelivers them;
their message ids make the redelivery a no-op. So: at least once on the wire,
exactly once in the database.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as paho
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet import mqtt
from protocol import topics
from telemetry.ingest import metrics
from telemetry.ingest.services import dead_letter_record, ingest_batch, is_db_unavailable
from telemetry.ingest.types import BatchResult, RawMessage
from telemetry.metrics.partitions import metrics_partitions_ensure
from telemetry.models.ingest import DeadLetterReason

log = logging.getLogger(__name__)

_BACKOFF_MAX_S = 10.0


@dataclass(frozen=True)
class IngestOptions:
    client_id: str
    batch_max: int
    batch_ms: int
    shared: bool = True
    share_group: str = "ingest"
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 2000

    @classmethod
    def from_settings(cls, **overrides) -> IngestOptions:
        values = {
            "client_id": settings.INGEST_CLIENT_ID or f"fleet-ingest-{socket.gethostname()[:40]}",
            "batch_max": settings.INGEST_BATCH_MAX,
            "batch_ms": settings.INGEST_BATCH_MS,
            "shared": settings.INGEST_SHARED_SUBSCRIPTION,
            "share_group": settings.INGEST_SHARE_GROUP,
            "session_expiry_s": settings.INGEST_SESSION_EXPIRY_S,
            "receive_maximum": settings.INGEST_RECEIVE_MAXIMUM,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class IngestRunner:
    def __init__(self, *, options: IngestOptions, stop_event: threading.Event) -> None:
        self.options = options
        self.stop_event = stop_event
        self.inbox: queue.Queue[RawMessage] = queue.Queue()
        self.connection: mqtt.Connection | None = None
        self.batches = 0

    # -- MQTT side (paho's thread) ------------------------------------------------------------

    def _on_connect(self, conn: mqtt.Connection, session_present: bool) -> None:
        shared = self.options.shared and conn.protocol == mqtt.MQTT_V5
        topic_filter = topics.ingest_filter(shared=shared, group=self.options.share_group)
        if conn.protocol == mqtt.MQTT_V5:
            # retainHandling=1: retained up/status only when the subscription is new, not on every reconnect.
            conn.client.subscribe(topic_filter, options=SubscribeOptions(qos=1, retainHandling=1))
        else:
            conn.client.subscribe(topic_filter, qos=1)
        metrics.CONNECTED.set(1)
        log.info(
            "ingest connected",
            extra={"filter": topic_filter, "session_present": session_present, "protocol": conn.protocol},
        )

    def _on_message(self, conn: mqtt.Connection, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")  # dead-lettered as a bad topic
        self.inbox.put(
            RawMessage(
                topic=topic,
                payload=message.payload,
                received_at=timezone.now(),
                mid=message.mid,
                qos=message.qos,
                generation=conn.generation,
            )
        )

    def connect(self) -> bool:
        """Connect (retrying with backoff until stopped); False if stopped first."""
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                self.connection = mqtt.connect(
                    client_id=self.options.client_id,
                    clean_start=False,
                    session_expiry_s=self.options.session_expiry_s,
                    receive_maximum=self.options.receive_maximum,
                    manual_ack=True,
                    # Back quickly after a broker restart: until it resubscribes, a shared subscription
                    # is not there (Mosquitto 2.0 does not persist it) and messages for it are dropped.
                    reconnect_min_delay=0.25,
                    on_connect=self._on_connect,
                    on_message=self._on_message,
                )
                return True
            except mqtt.MqttError as exc:
                log.warning("ingest cannot connect to the broker, retrying: %s", exc.message)
                self.stop_event.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
        return False

    # -- the loop (this thread) ------------------------------------------------------------------

    def collect(self) -> list[RawMessage]:
        """Up to batch_max messages, waiting at most batch_ms after the first one."""
        try:
            first = self.inbox.get(timeout=0.25)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.options.batch_ms / 1000
        while len(batch) < self.options.batch_max:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def commit(self, batch: list[RawMessage]) -> BatchResult | None:
        """Commit a batch, retrying while the database is down; None if stopped before it could."""
        delay = 0.25
        while True:
            try:
                return ingest_batch(messages=batch)
            except Exception as exc:
                if not is_db_unavailable(exc):
                    log.exception("ingest batch failed; processing its %d messages one by one", len(batch))
                    return self._commit_one_by_one(batch)
                metrics.DB_RETRIES.inc()
                log.warning("database unavailable, batch of %d kept unacknowledged: %s", len(batch), exc)
                for conn in connections.all():
                    conn.close()
                if self.stop_event.wait(delay):
                    return None
                delay = min(delay * 2, _BACKOFF_MAX_S)

    def _commit_one_by_one(self, batch: list[RawMessage]) -> BatchResult:
        """A batch that fails for a reason other than the database: isolate the message that causes it."""
        total = BatchResult(received=len(batch))
        for raw in batch:
            try:
                result = ingest_batch(messages=[raw])
            except Exception as exc:
                if is_db_unavailable(exc):
                    raise
                log.exception("ingest failed on one message; dead-lettered")
                dead_letter_record(
                    raw=raw, reason=DeadLetterReason.INTERNAL_ERROR, detail=f"{type(exc).__name__}: {exc}"
                )
                result = BatchResult(received=1, dead_letters={DeadLetterReason.INTERNAL_ERROR: 1})
            total.duplicates += result.duplicates
            total.lag_s += result.lag_s
            for kind, n in result.committed.items():
                total.committed[kind] = total.committed.get(kind, 0) + n
            for reason, n in result.dead_letters.items():
                total.dead_letters[reason] = total.dead_letters.get(reason, 0) + n
        return total

    def acknowledge(self, batch: list[RawMessage]) -> None:
        conn = self.connection
        missed = 0
        for raw in batch:  # in arrival order, as MQTT wants PUBACKs
            if raw.qos and (conn is None or not conn.ack(raw.mid, raw.qos, raw.generation)):
                missed += 1
        if missed:
            # The connection changed since these arrived: the broker redelivers them, the ids dedupe them.
            metrics.UNACKED.inc(missed)

    def record(self, result: BatchResult, seconds: float) -> None:
        metrics.RECEIVED.inc(result.received)
        metrics.BATCH_SECONDS.observe(seconds)
        metrics.BATCH_SIZE.observe(result.received)
        metrics.DUPLICATES.inc(result.duplicates)
        for kind, n in result.committed.items():
            metrics.COMMITTED.labels(kind).inc(n)
        for reason, n in result.dead_letters.items():
            metrics.DEAD_LETTERS.labels(reason).inc(n)
        for lag in result.lag_s[:: max(1, len(result.lag_s) // 100)]:  # a sample is enough for a histogram
            metrics.LAG_SECONDS.observe(max(lag, 0.0))

    def run(self) -> None:
        """Until stop_event: collect, commit, acknowledge. On stop the current batch is finished first."""
        try:
            metrics_partitions_ensure()
        except Exception:  # the database may be down at start; the beat task creates them too
            log.exception("could not ensure metric partitions at start")
        if not self.connect():
            return
        try:
            while not self.stop_event.is_set():
                batch = self.collect()
                if not batch:
                    metrics.CONNECTED.set(1 if self.connection and self.connection.connected else 0)
                    close_old_connections()
                    continue
                started = time.perf_counter()
                result = self.commit(batch)
                if result is None:
                    break  # stopping while the database is down: the broker keeps the messages
                self.acknowledge(batch)
                self.batches += 1
                self.record(result, time.perf_counter() - started)
        finally:
            metrics.CONNECTED.set(0)
            if self.connection is not None:
                # Let the last PUBACKs leave before DISCONNECT (paho sends in order from its queue).
                self.connection.close()


def run_ingest(stop_event: threading.Event, **overrides) -> IngestRunner:
    """Run the ingest loop in the calling thread until `stop_event` is set (the demo runs it in a thread)."""
    runner = IngestRunner(options=IngestOptions.from_settings(**overrides), stop_event=stop_event)
    try:
        runner.run()
    finally:
        connections.close_all()
    return runner
