"""Media upload grants: up/media request -> down/media granted|refused; up/media complete -> verify, attach.

Snapshots and clips do not pass through MQTT or this process on the way in: the device
PUTs parts to presigned URLs (S3 UploadPart, or the local store's signed part URLs). On
completion the store assembles the parts and the object's size and sha256 must equal what
the device promised, or the object is deleted and the refusal recorded.

The one exception is a small thumbnail inline in an event's end report (protocol.images):
`media_inline_store` checks it, stores it in the same store and records it exactly as a
verified snapshot upload, so the API and the UI cannot tell the two paths apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import math

from django.db import transaction
from django.utils import timezone

from devices.models import Device
from fleet import storage
from protocol.down import MediaGranted, MediaRefused
from protocol.errors import MessageError
from protocol.images import decode_inline_thumbnail
from protocol.messages import make
from protocol.up import MediaComplete, MediaRequest
from telemetry.commands.downlink import send_on_commit
from telemetry.events.alerts import in_quiet_hours
from telemetry.models.events import Event
from telemetry.models.media import Media, MediaKind, MediaState
from telemetry.policies.resolve import policy_for
from telemetry.policies.usage import MEDIA_CLASS, bytes_used_today, data_usage_add, device_tz

log = logging.getLogger(__name__)

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


# Refusal reasons of an inline thumbnail (Media.error, and the dead-letter reason).
BAD_THUMBNAIL = "bad_thumbnail"
STORAGE_ERROR = "storage_error"


class InlineRefused(Exception):
    """An inline thumbnail that was not stored; `media` records why (unless a good copy was stored before)."""

    def __init__(self, media: Media, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.media, self.error, self.detail = media, error, detail


def inline_request_id(event_id: str) -> str:
    """The request id an event's inline thumbnail is recorded under: one per event, so a report
    delivered twice stores and counts its thumbnail once."""
    request_id = f"inline-{event_id}"
    if len(request_id) > 64:  # event ids may be 64 characters themselves
        request_id = "inline-" + hashlib.sha256(event_id.encode()).hexdigest()[:57]
    return request_id


def media_inline_store(*, event: Event, thumbnail: str, at: dt.datetime | None = None) -> Media:
    """Store the thumbnail an end report carried inline as the event's verified snapshot.

    The size, the format (JPEG or WebP magic) and the sha256 are established here, from the
    bytes. A bad thumbnail (not base64, over the inline cap, not an image) or a store that
    fails is recorded as a refused Media row with the reason, then raised as InlineRefused;
    the event itself is untouched either way. The base64 characters, what crossed the
    link, count in the device's data usage as thumbnail bytes.
    """
    with transaction.atomic():  # the refused row is committed with the batch, then we raise
        media, refusal = _inline_store(event, thumbnail, at or timezone.now())
    if refusal is not None:
        raise InlineRefused(media, *refusal)
    return media


def _inline_store(event: Event, thumbnail: str, at: dt.datetime) -> tuple[Media, tuple[str, str] | None]:
    device = event.device
    request_id = inline_request_id(event.event_id)
    media = Media.objects.select_for_update().filter(device=device, request_id=request_id).first()
    media = media or Media(device=device, request_id=request_id, kind=MediaKind.SNAPSHOT, event=event)
    try:
        data, content_type = decode_inline_thumbnail(thumbnail)
    except MessageError as exc:
        return _inline_refused(media, BAD_THUMBNAIL, exc.detail, size=len(thumbnail) * 3 // 4)
    sha256 = hashlib.sha256(data).hexdigest()
    if media.state == MediaState.VERIFIED and media.sha256 == sha256:
        return media, None  # the same report again (a new message id for the same event)
    key = f"media/{device.device_id}/{event.event_id}/{request_id}.{CONTENT_TYPES['snapshot'][content_type]}"
    try:
        size, stored_sha256 = storage.put(key, io.BytesIO(data))
    except Exception as exc:  # any store failure (S3 outage, bad key, full disk) must not cost the event
        detail = f"{exc.code}: {exc.message}" if isinstance(exc, storage.StorageError) else repr(exc)
        log.warning("inline thumbnail of %s/%s not stored: %s", device.device_id, event.event_id, detail)
        return _inline_refused(media, STORAGE_ERROR, detail, size=len(data))
    if (size, stored_sha256) != (len(data), sha256):
        storage.delete(key)
        detail = f"the store holds {size} bytes, sha256 {stored_sha256}"
        return _inline_refused(media, STORAGE_ERROR, detail, size=len(data))
    media.event, media.kind, media.content_type = event, MediaKind.SNAPSHOT, content_type
    media.size, media.sha256, media.key = size, sha256, key
    media.upload_id, media.part_size, media.expires_at = "", None, None
    media.state, media.error, media.detail, media.verified_at = MediaState.VERIFIED, "", "", at
    media.save()
    ref = {"kind": MediaKind.SNAPSHOT.value, "sha256": sha256}
    if ref not in event.media_refs:
        # As if the report had named it: the event lists every snapshot it has.
        event.media_refs = [*event.media_refs, ref]
        Event.objects.filter(pk=event.pk).update(media_refs=event.media_refs, updated_at=at)
    data_usage_add(device=device, uplink_class=MEDIA_CLASS["snapshot"], nbytes=len(thumbnail), at=at)
    return media, None


def _inline_refused(media: Media, error: str, detail: str, *, size: int) -> tuple[Media, tuple[str, str]]:
    if media.state != MediaState.VERIFIED:  # a good copy stored before is not undone by a bad one
        media.kind, media.content_type, media.size, media.sha256 = MediaKind.SNAPSHOT, "", size, ""
        media.key = media.upload_id = ""
        media.state, media.error, media.detail = MediaState.REFUSED, error, detail[:500]
        media.save()
    return media, (error, detail)
