"""Closed vocabularies of the protocol, defined once (import them, never copy)."""

from __future__ import annotations

from typing import Literal, get_args

# Uplink priority classes, highest priority first. The edge queue drains in this
# order and evicts from the end; the bandwidth policy names these classes.
UplinkClass = Literal["alert", "event", "thumbnail", "telemetry", "clip"]
UPLINK_CLASSES: tuple[str, ...] = get_args(UplinkClass)

# Per-device OTA states. pending/notified/timed_out are set by the server only.
OtaState = Literal[
    "pending",
    "notified",
    "downloading",
    "verifying",
    "shadow",
    "installing",
    "health_check",
    "succeeded",
    "failed",
    "rolled_back",
    "timed_out",
    "cancelled",
]
OTA_STATES: tuple[str, ...] = get_args(OtaState)
OTA_TERMINAL_STATES: frozenset[str] = frozenset(
    {"succeeded", "failed", "rolled_back", "timed_out", "cancelled"}
)
# failed: refused or broken before the new model was ever active (old model untouched);
# rolled_back: the new model was switched to, failed its health check, the old slot is back.
# shadow: verified and stored in the inactive slot, run beside the active model on a share of the
# frames (a shadow offer); it is activated only by a later offer of the same release without shadow.
OtaDeviceState = Literal[
    "downloading", "verifying", "shadow", "installing", "health_check", "succeeded", "failed", "rolled_back"
]
OTA_DEVICE_STATES: tuple[str, ...] = get_args(OtaDeviceState)

Link = Literal["ethernet", "wifi", "cellular", "unknown"]
LINKS: tuple[str, ...] = get_args(Link)

MediaKind = Literal["snapshot", "clip"]
MEDIA_KINDS: tuple[str, ...] = get_args(MediaKind)

AckStatus = Literal["acknowledged", "succeeded", "failed"]
ACK_STATUSES: tuple[str, ...] = get_args(AckStatus)

# upload_clip: upload the clip the device kept for one event (args.event_id).
CommandName = Literal["reboot", "snapshot", "set_log_level", "request_logs", "upload_clip"]
COMMAND_NAMES: tuple[str, ...] = get_args(CommandName)

ThumbnailFormat = Literal["webp", "jpeg"]
THUMBNAIL_FORMATS: tuple[str, ...] = get_args(ThumbnailFormat)

LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)

# Model quality (up/telemetry `quality`): the role of a model on the device, and the IoU at which a
# shadow candidate's detection counts as the same object as the active model's (same label too).
ModelRole = Literal["active", "shadow"]
MODEL_ROLES: tuple[str, ...] = get_args(ModelRole)
SHADOW_IOU = 0.5
