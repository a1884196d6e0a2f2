"""Messages a device publishes (fleet/v1/devices/{id}/up/{kind})."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from protocol._base import (
    Frozen,
    Message,
    MessageId,
    Name,
    NonNegFloat,
    NonNegInt,
    Pem,
    Percent,
    PosInt,
    Reason,
    Sha256Hex,
    Text,
    Timestamp,
    Unit,
    Version,
    check_pem,
)
from protocol.jsonsafe import check_value
from protocol.vocab import AckStatus, Link, MediaKind, ModelRole, OtaDeviceState, UplinkClass

# --- up/status -----------------------------------------------------------------


class Status(Message, kw_only=True):
    """Birth message (online) and last will (offline, reason "connection_lost"); retained."""

    state: Literal["online", "offline"]
    agent_version: Version
    reason: Reason | None = None
    model_version: Version | None = None
    hardware_model: Name | None = None
    uptime_s: NonNegFloat | None = None
    config_revision: NonNegInt | None = None  # the down/config revision in effect
    # What is wrong on the device while it runs on ("camera: ...", "model: ..."): bad input
    # the agent works around (a source it retries, a model it refused and what runs instead).
    faults: Annotated[list[Reason], msgspec.Meta(max_length=10)] = []


# --- up/telemetry --------------------------------------------------------------


class TelemetrySample(Frozen, kw_only=True, omit_defaults=True):
    # Sent once a minute for ever: an unknown link, an absent reading and an empty counter map
    # are left out (the defaults below), not sent as "unknown", null and {}.
    ts: Timestamp
    cpu_pct: Percent
    mem_pct: Percent
    link: Link = "unknown"
    temp_c: Annotated[float, msgspec.Meta(ge=-100, le=200)] | None = None
    fps: NonNegFloat | None = None
    inference_ms: NonNegFloat | None = None
    disk_free_mb: NonNegFloat | None = None
    # Items waiting in the uplink queue and bytes sent since the previous sample, per class;
    # a class left out has none.
    queue_depth: dict[UplinkClass, NonNegInt] = {}
    bytes_sent: dict[UplinkClass, NonNegInt] = {}


# A label as the detector names it (COCO: "person", "traffic light"); at most MAX_LABELS per window.
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_LABELS = 100
Ms = Annotated[float, msgspec.Meta(ge=0, le=3_600_000)]


class ModelQuality(Frozen, kw_only=True, omit_defaults=True):
    """What one model version did on the device over a window (since the previous telemetry message).

    role "active": the model the camera runs. role "shadow": a candidate run next to it on a share
    of the frames (a shadow deployment); matched / reference / extra compare its detections with the
    active model's on those same frames (same label, IoU >= protocol.vocab.SHADOW_IOU).
    """

    model: Name
    version: Version
    role: ModelRole = "active"
    start: Timestamp
    end: Timestamp
    frames: NonNegInt  # frames the model ran on in the window
    dropped_frames: NonNegInt = 0  # frames the sampler was due to take but missed (processing behind)
    latency_p50_ms: Ms | None = None
    latency_p95_ms: Ms | None = None
    fps: NonNegFloat | None = None  # frames the model ran on per second of the window
    detections: Annotated[dict[Label, NonNegInt], msgspec.Meta(max_length=MAX_LABELS)] = {}
    score_mean: Unit | None = None
    crashes: NonNegInt = 0  # detector errors, camera thread failures, unclean agent restarts
    cpu_pct: Percent | None = None  # the agent process, share of all cores
    temp_c: Annotated[float, msgspec.Meta(ge=-100, le=200)] | None = None
    matched: NonNegInt = 0
    reference: NonNegInt = 0
    extra: NonNegInt = 0

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("quality window ends before it starts")
        if self.matched > self.reference:
            raise ValueError("matched cannot exceed reference (the active model's detections)")
        if (
            self.latency_p50_ms is not None
            and self.latency_p95_ms is not None
            and self.latency_p95_ms < self.latency_p50_ms
        ):
            raise ValueError("latency_p95_ms is below latency_p50_ms")


class Telemetry(Message, kw_only=True):
    samples: Annotated[list[TelemetrySample], msgspec.Meta(min_length=1, max_length=500)]
    # Per model version (the active one, a shadow candidate; one more across a model switch).
    quality: Annotated[list[ModelQuality], msgspec.Meta(max_length=4)] = []


# --- up/events -----------------------------------------------------------------


class MediaRef(Frozen, kw_only=True):
    kind: MediaKind
    sha256: Sha256Hex


class Detection(Frozen, kw_only=True, omit_defaults=True):
    # Every event goes out twice: absent end / zone / media say "none" in fewer bytes than null.
    event_id: MessageId
    camera: Name
    label: Name
    score: Unit
    # [x, y, w, h] normalised to the frame, origin top-left.
    bbox: tuple[Unit, Unit, Unit, Unit]
    start: Timestamp
    end: Timestamp | None = None
    zone: Name | None = None
    media: Annotated[list[MediaRef], msgspec.Meta(max_length=16)] = []
    # The best-frame thumbnail inline (end report): base64 of a JPEG or WebP of at most
    # protocol.images.INLINE_THUMBNAIL_MAX_BYTES. Checked by protocol.images, not by this
    # schema, so a bad thumbnail never costs the receiver the event metadata around it.
    thumbnail: str | None = None

    def __post_init__(self) -> None:
        x, y, w, h = self.bbox
        # 1e-6: tolerate float rounding of boxes that touch the frame edge.
        if x + w > 1 + 1e-6 or y + h > 1 + 1e-6:
            raise ValueError("bbox must lie inside the frame (x+w <= 1, y+h <= 1)")
        if self.end is not None and self.end < self.start:
            raise ValueError("event end is before its start")


class Events(Message, kw_only=True):
    events: Annotated[list[Detection], msgspec.Meta(min_length=1, max_length=200)]


# --- up/ota --------------------------------------------------------------------


class OtaReport(Message, kw_only=True):
    deployment_id: Name
    serial: NonNegInt
    model: Name
    state: OtaDeviceState
    reason: Reason | None = None
    progress: Unit | None = None


# --- up/media (tagged union on "op") -------------------------------------------


class MediaRequest(Message, kw_only=True, tag_field="op", tag="request"):
    """Ask for an upload grant for one snapshot or clip."""

    request_id: MessageId
    event_id: MessageId
    kind: MediaKind
    size: PosInt
    sha256: Sha256Hex
    content_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z]+/[A-Za-z0-9.+-]+$", max_length=100)]


class UploadedPart(Frozen, kw_only=True):
    number: Annotated[int, msgspec.Meta(ge=1, le=10000)]
    etag: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class MediaComplete(Message, kw_only=True, tag_field="op", tag="complete"):
    """All parts are uploaded; the server completes the multipart upload."""

    request_id: MessageId
    parts: Annotated[list[UploadedPart], msgspec.Meta(min_length=1, max_length=10000)]

    def __post_init__(self) -> None:
        numbers = [p.number for p in self.parts]
        if numbers != sorted(set(numbers)):
            raise ValueError("parts must be in ascending order without duplicates")


# --- up/ack --------------------------------------------------------------------


class Ack(Message, kw_only=True):
    command_id: MessageId
    status: AckStatus
    detail: Text | None = None
    result: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.result is not None:
            check_value(self.result, "result")


# --- up/cert -------------------------------------------------------------------


class CertRequest(Message, kw_only=True):
    """Certificate renewal: a CSR made on the device (the private key never leaves it)."""

    request_id: MessageId
    csr_pem: Pem

    def __post_init__(self) -> None:
        check_pem(self.csr_pem, "CERTIFICATE REQUEST", "csr_pem")
