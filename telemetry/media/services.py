"""Media upload grants: up/media request -> down/media granted|refused; up/media complete -> verify, attach.

Bytes never pass through MQTT or this process on the way in: the device PUTs parts to
presigned URLs (S3 UploadPart, or the local store's signed part URLs). On completion
the store assembles the parts and the object's size and sha256 must equal what the
device promised, or the object is deleted and the refusal recorded.
"""

from __future__ import annotations

import datetime as dt
import math

from django.db import transaction
from django.utils import timezone

from devices.models import Device
from fleet import storage
from protocol.down import MediaGranted, MediaRefused
from protocol.messages import make
from protocol.up import MediaComplete, MediaRequest
from telemetry.commands.downlink import send_on_commit
from telemetry.events.alerts import in_quiet_hours
from telemetry.models.events import Event
from telemetry.models.media import Media, MediaState
from telemetry.policies.resolve import policy_for
from telemetry.policies.usage import MEDIA_CLASS, bytes_used_today, data_usage_add, device_tz

MIB = 1024 * 1024
PART_SIZE = 8 * MIB  # S3 needs >= 5 MiB for every part but the last
GRANT_TTL_S = 3600
GET_URL_TTL_S = 300
CONTENT_TYPES = {
    "snapshot": {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"},
    "clip": {"video/mp4": "mp4", "video/webm": "webm", "video/x-matroska": "mkv"},
}
# Without any policy: protocol defaults plus these limits.
DEFAULT_MAX_BYTES = {"snapshot": 5 * MIB, "clip": 200 * MIB}


class Refusal(Exception):
    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error, self.detail = error, detail


def _check(device: Device, request: MediaRequest, now: dt.datetime) -> None:
    """Raise Refusal unless the device's policy lets this upload through now."""
    types = CONTENT_TYPES[request.kind]
    if request.content_type not in types:
        raise Refusal("unsupported_type", f"{request.kind} must be one of {', '.join(sorted(types))}")
    policy = policy_for(device)
    uplink_class = MEDIA_CLASS[request.kind]
    if policy is not None:
        if uplink_class not in policy.classes_allowed:
            raise Refusal("class_not_allowed", f"the bandwidth policy does not allow {uplink_class}")
        local = now.astimezone(device_tz(device)).time()
        if in_quiet_hours(local, policy.quiet_start, policy.quiet_end):
            raise Refusal("quiet_hours", "inside the policy's quiet hours only alerts are sent")
        limit = policy.max_snapshot_bytes if request.kind == "snapshot" else policy.max_clip_bytes
    else:
        limit = DEFAULT_MAX_BYTES[request.kind]
    if request.size > limit:
        raise Refusal("too_large", f"{request.size} bytes > the {request.kind} limit of {limit}")
    if policy is not None and policy.daily_budget_mb is not None:
        budget = policy.daily_budget_mb * MIB
        used = bytes_used_today(device=device)
        if used + request.size > budget:
            raise Refusal(
                "quota_exceeded", f"daily budget of {policy.daily_budget_mb} MiB: {used} bytes used"
            )


def _grant(media: Media, now: dt.datetime) -> MediaGranted:
    count = max(1, math.ceil(media.size / media.part_size))
    expires_s = max(1, int((media.expires_at - now).total_seconds()))
    urls = storage.multipart_part_urls(
        media.key, media.upload_id, range(1, count + 1), expires_s, media.part_size
    )
    return make(
        MediaGranted,
        request_id=media.request_id,
        upload_id=media.upload_id,
        part_size=media.part_size,
        parts=[{"number": n, "url": urls[n]} for n in sorted(urls)],
        expires=media.expires_at.timestamp(),
    )


def _refuse(device: Device, request_id: str, error: str, detail: str) -> MediaRefused:
    msg = make(MediaRefused, request_id=request_id, error=error, detail=detail[:2000])
    send_on_commit(device.device_id, msg)
    return msg


@transaction.atomic
def media_request(
    *, device: Device, request: MediaRequest, now: dt.datetime | None = None
) -> MediaGranted | MediaRefused:
    """Grant or refuse an upload; the answer goes out on down/media after commit.

    The same request_id again returns the same grant (same upload_id) while it is valid,
    so a device resumes after a restart by simply asking again.
    """
    now = now or timezone.now()
    media = Media.objects.select_for_update().filter(device=device, request_id=request.request_id).first()
    if media is not None and media.state == MediaState.VERIFIED:
        return _refuse(device, request.request_id, "already_uploaded", "this request was completed")
    promise = (request.kind, request.size, request.sha256, request.content_type)
    if (
        media is not None
        and media.state == MediaState.GRANTED
        and media.expires_at > now
        and (media.kind, media.size, media.sha256, media.content_type) == promise
    ):
        msg = _grant(media, now)
        send_on_commit(device.device_id, msg)
        return msg
    if media is not None and media.state == MediaState.GRANTED:
        storage.multipart_abort(media.key, media.upload_id)  # expired or changed: start over
    media = media or Media(device=device, request_id=request.request_id)
    media.kind, media.size, media.sha256, media.content_type = promise
    media.event = Event.objects.filter(device=device, event_id=request.event_id).first()
    try:
        if media.event is None:
            raise Refusal("unknown_event", f"no event {request.event_id} from this device")
        _check(device, request, now)
    except Refusal as refusal:
        media.state, media.error, media.detail = MediaState.REFUSED, refusal.error, refusal.detail[:500]
        media.key = media.upload_id = ""
        media.save()
        return _refuse(device, request.request_id, refusal.error, refusal.detail)
    ext = CONTENT_TYPES[request.kind][request.content_type]
    media.key = f"media/{device.device_id}/{request.event_id}/{request.request_id}.{ext}"
    media.upload_id = storage.multipart_create(media.key)
    media.part_size = PART_SIZE
    media.expires_at = now + dt.timedelta(seconds=GRANT_TTL_S)
    media.state, media.error, media.detail = MediaState.GRANTED, "", ""
    media.save()
    msg = _grant(media, now)
    send_on_commit(device.device_id, msg)
    return msg


@transaction.atomic
def media_complete(
    *, device: Device, complete: MediaComplete, now: dt.datetime | None = None
) -> Media | MediaRefused:
    """Complete the multipart upload and verify size and sha256; a mismatch deletes the object."""
    now = now or timezone.now()
    media = Media.objects.select_for_update().filter(device=device, request_id=complete.request_id).first()
    if media is not None and media.state == MediaState.VERIFIED:
        return media  # a redelivered complete
    if media is None or media.state != MediaState.GRANTED:
        return _refuse(device, complete.request_id, "unknown_request", "no open grant for this request")
    try:
        size, sha256 = storage.multipart_complete(
            media.key, media.upload_id, [(p.number, p.etag) for p in complete.parts]
        )
    except storage.StorageError as exc:
        storage.multipart_abort(media.key, media.upload_id)
        return _fail(media, exc.code, exc.message)
    if size != media.size:
        storage.delete(media.key)
        return _fail(media, "size_mismatch", f"received {size} bytes, promised {media.size}")
    if sha256 != media.sha256:
        storage.delete(media.key)
        return _fail(media, "hash_mismatch", f"received sha256 {sha256}, promised {media.sha256}")
    media.state, media.verified_at = MediaState.VERIFIED, now
    media.save(update_fields=["state", "verified_at", "updated_at"])
    data_usage_add(device=device, uplink_class=MEDIA_CLASS[media.kind], nbytes=size, at=now)
    return media


def _fail(media: Media, error: str, detail: str) -> MediaRefused:
    media.state, media.error, media.detail = MediaState.REFUSED, error, detail[:500]
    media.save(update_fields=["state", "error", "detail", "updated_at"])
    return _refuse(media.device, media.request_id, error, detail)


def media_url(media: Media) -> str | None:
    """A short-lived GET URL for verified media (None otherwise)."""
    if media.state != MediaState.VERIFIED:
        return None
    return storage.presigned_get(media.key, GET_URL_TTL_S)
