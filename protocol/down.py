"""Messages the server publishes to one device (fleet/v1/devices/{id}/down/{kind})."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from protocol._base import (
    HHMM,
    MESSAGE_ID,
    Frozen,
    Message,
    MessageId,
    Name,
    NonNegInt,
    Pem,
    PosInt,
    Reason,
    Text,
    Timestamp,
    Unit,
    Url,
    check_pem,
)
from protocol.jsonsafe import check_value
from protocol.vocab import LOG_LEVELS, UPLINK_CLASSES, CommandName, ThumbnailFormat, UplinkClass

# --- down/config (retained) ----------------------------------------------------


class BandwidthPolicy(Frozen, kw_only=True):
    max_kbps: PosInt
    # None: no daily cap. Counted in MiB per local calendar day.
    daily_budget_mb: NonNegInt | None = None
    classes_allowed: list[UplinkClass] = msgspec.field(default_factory=lambda: list(UPLINK_CLASSES))
    # Highest first; classes left out follow in the default UPLINK_CLASSES order.
    class_priority: list[UplinkClass] = []
    # [start, end] local "HH:MM"; may wrap midnight. Only "alert" is sent inside it.
    quiet_hours: tuple[HHMM, HHMM] | None = None
    # Metered link (cellular): the agent also holds back "clip" unless explicitly requested.
    metered: bool = False

    def __post_init__(self) -> None:
        for field in ("classes_allowed", "class_priority"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                raise ValueError(f"{field} has duplicates")


class DetectionSettings(Frozen, kw_only=True):
    # "onnx": the model installed by OTA, else the agent's default pretrained NanoDet-g (COCO);
    # "builtin": OpenCV motion blobs, which cannot tell what moved and report the label "motion".
    detector: Literal["builtin", "onnx"] = "onnx"
    # The score a detection needs: per label, else min_score (the default model's measured floors).
    min_score: Unit = 0.4
    min_scores: Annotated[dict[Name, Unit], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=lambda: {"person": 0.4, "vehicle": 0.25}
    )
    labels: Annotated[list[Name], msgspec.Meta(max_length=100)] = []  # empty: every label
    sample_fps: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    motion_threshold: Unit = 0.002  # the share of changed pixels that opens the gate (bench/edge)
    # One event per object: an event starts after confirm_frames matched frames and ends after
    # end_after_s seconds without the object.
    confirm_frames: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    end_after_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 2.0
    clip_pre_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 3.0
    clip_post_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 5.0
    # Labels whose clips are uploaded as soon as the event ends; None: every label. The default
    # uploads none: a clip is ~100x an event's other bytes (bench/edge); it stays on the
    # device (clip_keep) until an operator asks for it with the upload_clip command.
    clip_labels: Annotated[list[Name], msgspec.Meta(max_length=100)] | None = []
    # Record a clip of every event and keep it on the device (its media quota, oldest
    # evicted first) for upload_clip; false: only events of clip_labels get a clip.
    clip_keep: bool = True
    # The best-frame thumbnail of each event: longest side in px, format, quality (0..100 of
    # the format's encoder). WebP: ~40 % fewer bytes than JPEG at the same SSIM (bench/edge).
    thumbnail_max_side: Annotated[int, msgspec.Meta(ge=16, le=1024)] = 96
    thumbnail_format: ThumbnailFormat = "webp"
    thumbnail_quality: Annotated[int, msgspec.Meta(ge=10, le=100)] = 65


class DeviceConfig(Frozen, kw_only=True):
    detection: DetectionSettings = msgspec.field(default_factory=DetectionSettings)
    bandwidth: BandwidthPolicy = msgspec.field(default_factory=lambda: BandwidthPolicy(max_kbps=512))


class Config(Message, kw_only=True):
    """Desired configuration; `revision` increases with every change."""

    revision: NonNegInt
    config: DeviceConfig


# --- down/ota (retained) -------------------------------------------------------


class ShadowRequest(Frozen, kw_only=True):
    """Run the offered model beside the active one instead of switching to it (see up/ota "shadow")."""

    share: Annotated[float, msgspec.Meta(gt=0, le=1)]  # of the frames the active model runs on
    cpu_budget_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 25.0  # shadow time / wall time, at most


class OtaOffer(Message, kw_only=True):
    """A release to install; both documents are verified on the device (protocol.manifest)."""

    deployment_id: Name
    manifest: dict[str, Any]
    keylist: dict[str, Any]
    # Where to fetch the artifact if not the manifest's artifact_url (e.g. a presigned
    # URL that expires long before the manifest does). Unsigned on purpose: the
    # signed size and sha256 are what make the bytes trusted, not where they came from.
    artifact_url: Url | None = None
    # Set: verify and store the release, run it in shadow, do not activate it (until an offer of
    # the same release comes without `shadow`).
    shadow: ShadowRequest | None = None

    def __post_init__(self) -> None:
        check_value(self.manifest, "manifest")
        check_value(self.keylist, "keylist")


# --- down/cmd ------------------------------------------------------------------


class Command(Message, kw_only=True):
    command_id: MessageId
    name: CommandName
    args: dict[str, Any] = {}
    expires: Timestamp  # server clock; the device refuses (acks "failed") after it

    def __post_init__(self) -> None:
        check_value(self.args, "args")
        if self.name == "set_log_level" and self.args.get("level") not in LOG_LEVELS:
            raise ValueError(f"set_log_level needs args.level in {LOG_LEVELS}")
        if self.name == "request_logs":
            lines = self.args.get("lines", 1000)
            if type(lines) is not int or not 1 <= lines <= 100_000:
                raise ValueError("request_logs args.lines must be an int in 1..100000")
        if self.name == "upload_clip":
            event_id = self.args.get("event_id")
            if not isinstance(event_id, str) or MESSAGE_ID.fullmatch(event_id) is None:
                raise ValueError("upload_clip needs args.event_id, an event id of this device")


# --- down/media (tagged union on "result") ------------------------------------


class PartUrl(Frozen, kw_only=True):
    number: Annotated[int, msgspec.Meta(ge=1, le=10000)]
    url: Url


class MediaGranted(Message, kw_only=True, tag_field="result", tag="granted"):
    """One presigned PUT URL per part; the device answers up/media op=complete with the ETags."""

    request_id: MessageId
    upload_id: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    part_size: PosInt
    parts: Annotated[list[PartUrl], msgspec.Meta(min_length=1, max_length=10000)]
    expires: Timestamp


class MediaRefused(Message, kw_only=True, tag_field="result", tag="refused"):
    request_id: MessageId
    error: Reason
    detail: Text = ""


# --- down/cert (tagged union on "result") -------------------------------------


class CertIssued(Message, kw_only=True, tag_field="result", tag="issued"):
    request_id: MessageId
    certificate_pem: Pem
    ca_pem: Pem

    def __post_init__(self) -> None:
        check_pem(self.certificate_pem, "CERTIFICATE", "certificate_pem")
        check_pem(self.ca_pem, "CERTIFICATE", "ca_pem")


class CertRefused(Message, kw_only=True, tag_field="result", tag="refused"):
    request_id: MessageId
    error: Reason
    detail: Text = ""
