"""Prometheus metrics of the ingest process (served by `manage.py ingest --metrics-port`)."""

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("fleet_ingest_received_total", "MQTT messages received by the ingest")
COMMITTED = Counter("fleet_ingest_committed_total", "New messages handled and committed", ["kind"])
DUPLICATES = Counter("fleet_ingest_duplicates_total", "Redelivered messages dropped by message id")
DEAD_LETTERS = Counter(
    "fleet_ingest_dead_letters_total", "Messages refused into the dead-letter table", ["reason"]
)
BATCH_SECONDS = Histogram(
    "fleet_ingest_batch_seconds",
    "Time to process and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "fleet_ingest_batch_messages", "Messages per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
)
LAG_SECONDS = Histogram(
    "fleet_ingest_lag_seconds",
    "Commit time minus the message's device timestamp",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
ONE_BY_ONE = Counter(
    "fleet_ingest_batches_one_by_one_total",
    "Batches that raised and were committed message by message (an ingest bug: bad input is dead-lettered)",
)
DB_RETRIES = Counter("fleet_ingest_db_retries_total", "Batches retried because the database was unavailable")
COMMITTER_STARTS = Counter(
    "fleet_ingest_committer_starts_total", "Committer processes started (more than one: a child died)"
)
CONNECTED = Gauge("fleet_ingest_connected", "1 while connected to the MQTT broker and subscribed")
UNACKED = Counter(
    "fleet_ingest_unacked_total", "Committed messages not acknowledged because the connection changed"
)
