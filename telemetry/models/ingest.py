"""What the ingest remembers about the wire itself: message ids it has processed, messages it refused."""

from django.db import models

# Dead-letter rows keep this many leading payload bytes: enough to see what went wrong,
# bounded so a flood of oversize messages cannot fill the database.
DEAD_LETTER_PAYLOAD_BYTES = 4096


class ProcessedMessage(models.Model):
    """One accepted (device id, message id): a QoS 1 redelivery of it is acknowledged and dropped.

    Keyed by the topic's device id string, not a foreign key: the ingest inserts these
    in bulk with ON CONFLICT DO NOTHING and never joins them to anything.
    """

    device_id = models.CharField(max_length=63)
    message_id = models.CharField(max_length=64)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device_id", "message_id"], name="telemetry_processed_unique")
        ]

    def __str__(self) -> str:
        return f"{self.device_id}/{self.message_id}"


class DeadLetterReason(models.TextChoices):
    # Refused by protocol.messages.decode_up (same codes as protocol.errors.MessageError).
    OVERSIZE = "oversize"
    BAD_JSON = "bad_json"
    UNKNOWN_VERSION = "unknown_version"
    SCHEMA = "schema"
    UNKNOWN_KIND = "unknown_kind"
    # Refused by the ingest.
    TOPIC = "topic", "Topic outside fleet/v1/devices/<id>/up/<kind>"
    UNKNOWN_DEVICE = "unknown_device", "Device id in the topic is not registered"
    DECOMMISSIONED = "decommissioned", "Device is decommissioned"
    NO_HANDLER = "no_handler", "No handler is installed for this kind"
    HANDLER_ERROR = "handler_error", "The kind's handler raised"
    INTERNAL_ERROR = "internal_error", "The ingest itself failed on this message"


class DeadLetter(models.Model):
    """A message the ingest refused: kept with its reason so an operator can see and replay it."""

    received_at = models.DateTimeField(db_index=True)
    topic = models.CharField(max_length=300)
    device_id = models.CharField(max_length=63, blank=True, db_index=True)
    kind = models.CharField(max_length=32, blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=32, choices=DeadLetterReason.choices, db_index=True)
    detail = models.TextField(blank=True)
    payload = models.BinaryField(max_length=DEAD_LETTER_PAYLOAD_BYTES)
    payload_size = models.PositiveIntegerField(help_text="Size of the whole payload, in bytes.")

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.reason}: {self.topic}"
