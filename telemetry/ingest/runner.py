"""The ingest loop: MQTT in, batches committed, acknowledgements out.

paho's network thread only queues each PUBLISH. This loop takes up to
INGEST_BATCH_MAX messages or INGEST_BATCH_MS, has them committed (ingest.committer:
in a forked process, or in this thread) and only then acknowledges them (paho
manual_ack, one write per batch): a crash at any point leaves the
unacknowledged messages in the broker's persistent session, which redelivers them;
their message ids make the redelivery a no-op. So: at least once on the wire,
exactly once in the database.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connections
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet import mqtt
from fleet.broker import stats as broker_stats
from protocol import topics
from telemetry.ingest import metrics
from telemetry.ingest.committer import Committer, ProcessCommitter, ThreadCommitter
from telemetry.ingest.types import BatchResult, Delivery
from telemetry.metrics.partitions import metrics_partitions_ensure

log = logging.getLogger(__name__)

_BACKOFF_MAX_S = 10.0
_FINISH_TIMEOUT_S = 60.0
_FIRST_WAIT_S = 0.25
_FILL_POLL_S = 0.002


@dataclass(frozen=True)
class IngestOptions:
    client_id: str
    batch_max: int
    batch_ms: int
    shared: bool = True
    share_group: str = "ingest"
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 3000
    commit_process: bool = True

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
            "commit_process": settings.INGEST_COMMIT_PROCESS,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class IngestRunner:
    def __init__(self, *, options: IngestOptions, stop_event: threading.Event) -> None:
        self.options = options
        self.stop_event = stop_event
        self.inbox: deque[Delivery] = deque()  # appended by paho's thread, taken by this one
        self._arrived = threading.Event()
        self.connection: mqtt.Connection | None = None
        self.subscribed = threading.Event()  # the current connection's subscription is in place
        self.batches = 0

    # -- MQTT side (paho's thread) ------------------------------------------------------------

    def _on_connect(self, conn: mqtt.Connection, session_present: bool) -> None:
        shared = self.options.shared and conn.protocol == mqtt.MQTT_V5
        topic_filter = topics.ingest_filter(shared=shared, group=self.options.share_group)
        self.subscribed.clear()
        conn.client.on_subscribe = self._on_subscribe
        if conn.protocol == mqtt.MQTT_V5:
            # retainHandling=1: retained up/status only when the subscription is new, not on every reconnect.
            conn.client.subscribe(topic_filter, options=SubscribeOptions(qos=1, retainHandling=1))
        else:
            conn.client.subscribe(topic_filter, qos=1)
        log.info(
            "ingest connected",
            extra={"filter": topic_filter, "session_present": session_present, "protocol": conn.protocol},
        )

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # Connected is not enough: what devices publish before the SUBACK has no subscriber here.
        if any(rc.is_failure for rc in reason_codes):
            log.error("the broker refused the ingest's subscription: %s", [str(rc) for rc in reason_codes])
            return
        self.subscribed.set()
        metrics.CONNECTED.set(1)

    def _on_publish(self, conn: mqtt.Connection, topic: bytes, payload: bytes, mid: int, qos: int) -> None:
        # Kept to the minimum: this thread's time is the ingest's ceiling (parsing happens in the batch).
        try:
            name = topic.decode()
        except UnicodeDecodeError:
            name = topic.decode("utf-8", "replace")  # dead-lettered as a bad topic
        self.inbox.append(Delivery(name, payload, time.time(), mid, qos, conn.generation))
        if not self._arrived.is_set():
            self._arrived.set()

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
                    on_publish=self._on_publish,
                )
                return True
            except mqtt.MqttError as exc:
                log.warning("ingest cannot connect to the broker, retrying: %s", exc.message)
                self.stop_event.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
        return False

    # -- the loop (this thread) ------------------------------------------------------------------

    def collect(self) -> list[Delivery]:
        """Up to batch_max messages, waiting at most batch_ms after the first one."""
        inbox, batch_max = self.inbox, self.options.batch_max
        self._arrived.clear()
        if not inbox and not self._arrived.wait(_FIRST_WAIT_S):
            return []
        batch: list[Delivery] = []
        deadline = time.monotonic() + self.options.batch_ms / 1000
        while True:
            batch.extend(inbox.popleft() for _ in range(min(len(inbox), batch_max - len(batch))))
            if len(batch) >= batch_max or time.monotonic() >= deadline:
                return batch
            time.sleep(_FILL_POLL_S)  # cheaper than a wake-up per message

    def acknowledge(self, batch: list[Delivery]) -> None:
        """PUBACK the batch's QoS 1 messages (the subscription's maximum) in arrival order, as MQTT wants."""
        conn = self.connection
        generation = conn.generation if conn is not None else -1
        mids = [d.mid for d in batch if d.qos and d.generation == generation]
        missed = sum(1 for d in batch if d.qos) - len(mids)
        if mids and not conn.ack_many(mids, generation):
            missed += len(mids)
        if missed:
            # The connection changed since these arrived: the broker redelivers them, the ids dedupe them.
            metrics.UNACKED.inc(missed)

    def record(self, result: BatchResult) -> None:
        metrics.RECEIVED.inc(result.received)
        metrics.DB_RETRIES.inc(result.db_retries)
        metrics.ONE_BY_ONE.inc(result.one_by_one)
        metrics.BATCH_SECONDS.observe(result.seconds)
        metrics.BATCH_SIZE.observe(result.received)
        metrics.DUPLICATES.inc(result.duplicates)
        for kind, n in result.committed.items():
            metrics.COMMITTED.labels(kind).inc(n)
        for reason, n in result.dead_letters.items():
            metrics.DEAD_LETTERS.labels(reason).inc(n)
        for lag in result.lag_s[:: max(1, len(result.lag_s) // 100)]:  # a sample is enough for a histogram
            metrics.LAG_SECONDS.observe(max(lag, 0.0))

    def run(self) -> None:
        """Until stop_event: collect, commit, acknowledge. On stop what was collected is finished first."""
        try:
            metrics_partitions_ensure()
        except Exception:  # the database may be down at start; the beat task creates them too
            log.exception("could not ensure metric partitions at start")
        # Forked before paho's thread exists: the child starts with only this thread.
        committer = (ProcessCommitter if self.options.commit_process else ThreadCommitter)(self.stop_event)
        watcher = broker_stats.StatsWatcher(client_id=f"{self.options.client_id}-stats")
        try:
            if not self.connect():
                return
            watcher.start()
            while not self.stop_event.is_set():
                if not self._acknowledge_done(committer, timeout=0.25 if committer.busy else 0):
                    break
                if committer.busy:
                    continue
                batch = self.collect()
                if batch:
                    committer.submit(batch)
                else:
                    live = (
                        self.connection is not None and self.connection.connected and self.subscribed.is_set()
                    )
                    metrics.CONNECTED.set(1 if live else 0)
                    close_old_connections()
            committer.finish()
            while committer.pending and self._acknowledge_done(committer, timeout=_FINISH_TIMEOUT_S):
                pass
        finally:
            watcher.stop()
            committer.close()
            metrics.CONNECTED.set(0)
            if self.connection is not None:
                # Let the last PUBACKs leave before DISCONNECT (paho sends in order from its queue).
                self.connection.close()

    def _acknowledge_done(self, committer: Committer, timeout: float) -> bool:
        """Acknowledge every batch the committer has finished; False once one could not be committed."""
        while (done := committer.take(timeout)) is not None:
            batch, result = done
            if result is None:
                # Stopping while the database is down: it and everything after it stay unacknowledged
                # (PUBACKs go in arrival order), the broker keeps them.
                return False
            self.acknowledge(batch)
            self.batches += 1
            self.record(result)
            timeout = 0
        return True


def run_ingest(
    stop_event: threading.Event, *, runner: IngestRunner | None = None, **overrides
) -> IngestRunner:
    """Run the ingest loop in the calling thread until `stop_event` is set (the demo runs it in a thread).
    `runner`: one made beforehand, so that its caller can wait on `runner.subscribed`."""
    runner = runner or IngestRunner(options=IngestOptions.from_settings(**overrides), stop_event=stop_event)
    try:
        runner.run()
    finally:
        connections.close_all()
    return runner
