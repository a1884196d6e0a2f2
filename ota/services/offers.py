"""What goes to a device on down/ota: the signed manifest + key list (an OtaOffer), or nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings

from devices.models import Device
from ota.models import Deployment, ModelArtifact, Release
from ota.services.keys import current_keylist
from protocol import topics
from protocol.down import OtaOffer, ShadowRequest
from protocol.messages import encode, make, new_message_id

log = logging.getLogger(__name__)
_OTA = topics.delivery("down", "ota")


def send(messages: list[tuple[str, bytes]]) -> None:
    """Publish once the transaction commits (fleet.mqtt), so a rollback never leaks an offer; a
    wave's offers go out together, without a round trip to the broker per device."""
    from fleet import mqtt

    mqtt.publish_many_on_commit(messages, qos=_OTA.qos, retain=_OTA.retain)


def _presigned(artifact: ModelArtifact) -> str | None:
    from fleet import storage

    try:
        return storage.presigned_get(artifact.storage_key, settings.OTA_ARTIFACT_URL_TTL_S)
    except Exception:  # the signed manifest URL still works; a presigned URL is a convenience
        log.warning("ota.presign_failed", exc_info=True)
        return None


def shadow_request(deployment: Deployment, wave: int) -> ShadowRequest | None:
    """What a device of `wave` is asked: to run the release in shadow, until its wave is activated."""
    if not deployment.shadow or wave <= deployment.shadow_activated_wave:
        return None
    return ShadowRequest(share=deployment.shadow["share"], cpu_budget_pct=deployment.shadow["cpu_budget_pct"])


def builds(release: Release) -> dict[int | None, tuple[dict, ModelArtifact]]:
    """{hardware model pk: (manifest, artifact)} for the release's per-hardware builds; None: the rest."""
    out: dict[int | None, tuple[dict, ModelArtifact]] = {None: (release.manifest, release.artifact)}
    for build in release.artifacts.select_related("artifact"):
        out[build.hardware_model_id] = (build.manifest, build.artifact)
    return out


def offers_send(
    *, deployment: Deployment, device_ids: Iterable[str], shadow: ShadowRequest | None = None
) -> int:
    """One retained OtaOffer per device, with the manifest of its hardware's build (fresh message id
    each; the documents are shared per build)."""
    ids = list(device_ids)
    if not ids:
        return 0
    release = deployment.release
    by_hardware = builds(release)
    groups: dict[int | None, list[str]] = {None: ids}
    if len(by_hardware) > 1:
        groups = {}
        hardware_of = dict(
            Device.objects.filter(device_id__in=ids).values_list("device_id", "hardware_model_id")
        )
        for device_id in ids:
            hw = hardware_of.get(device_id)
            groups.setdefault(hw if hw in by_hardware else None, []).append(device_id)
    keylist = current_keylist().document
    messages = []
    for hw, members in groups.items():
        manifest, artifact = by_hardware[hw]
        offer = make(
            OtaOffer,
            deployment_id=deployment.deployment_id,
            manifest=manifest,
            keylist=keylist,
            artifact_url=_presigned(artifact),
            shadow=shadow,
        )
        # Validated and encoded once; each device's copy differs only in its message id, which comes
        # first in the envelope (re-validating the manifest per copy was most of a wave's encoding).
        payload, first_id = encode(offer), offer.id.encode()
        messages += [
            (topics.down(device_id, "ota"), payload.replace(first_id, new_message_id().encode(), 1))
            for device_id in members
        ]
    send(messages)
    return len(ids)


def offers_clear(*, device_ids: Iterable[str]) -> None:
    """An empty retained payload: "nothing desired" (a device never treats it as a bad message)."""
    send([(topics.down(device_id, "ota"), b"") for device_id in device_ids])
