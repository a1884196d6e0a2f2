"""What goes to a device on down/ota: the signed manifest + key list (an OtaOffer), or nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec
from django.conf import settings

from ota.models import Deployment
from ota.services.keys import current_keylist
from protocol import topics
from protocol.down import OtaOffer, ShadowRequest
from protocol.messages import encode, make, new_message_id

log = logging.getLogger(__name__)
_OTA = topics.delivery("down", "ota")


def send(topic: str, payload: bytes) -> None:
    """Publish once the transaction commits (fleet.mqtt), so a rollback never leaks an offer."""
    from fleet import mqtt

    mqtt.publish_on_commit(topic, payload, qos=_OTA.qos, retain=_OTA.retain)


def _presigned(deployment: Deployment) -> str | None:
    from fleet import storage

    try:
        return storage.presigned_get(deployment.release.artifact.storage_key, settings.OTA_ARTIFACT_URL_TTL_S)
    except Exception:  # the signed manifest URL still works; a presigned URL is a convenience
        log.warning("ota.presign_failed", exc_info=True)
        return None


def shadow_request(deployment: Deployment, wave: int) -> ShadowRequest | None:
    """What a device of `wave` is asked: to run the release in shadow, until its wave is activated."""
    if not deployment.shadow or wave <= deployment.shadow_activated_wave:
        return None
    return ShadowRequest(share=deployment.shadow["share"], cpu_budget_pct=deployment.shadow["cpu_budget_pct"])


def offers_send(
    *, deployment: Deployment, device_ids: Iterable[str], shadow: ShadowRequest | None = None
) -> int:
    """One retained OtaOffer per device (fresh message id each; the documents are shared)."""
    ids = list(device_ids)
    if not ids:
        return 0
    offer = make(
        OtaOffer,
        deployment_id=deployment.deployment_id,
        manifest=deployment.release.manifest,
        keylist=current_keylist().document,
        artifact_url=_presigned(deployment),
        shadow=shadow,
    )
    for device_id in ids:
        # Validated once above; each device's copy differs only in its message id.
        send(topics.down(device_id, "ota"), encode(msgspec.structs.replace(offer, id=new_message_id())))
    return len(ids)


def offers_clear(*, device_ids: Iterable[str]) -> None:
    """An empty retained payload: "nothing desired" (a device never treats it as a bad message)."""
    for device_id in device_ids:
        send(topics.down(device_id, "ota"), b"")
