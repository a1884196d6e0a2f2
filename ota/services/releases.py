"""Releases: a signed manifest per artifact, with a serial that only ever increases (fleet-wide, so per track too)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from devices.models import HardwareModel
from fleet.audit import Actor, audit_record, snapshot
from fleet.services import model_delete
from ota.errors import OtaError
from ota.models import Deployment, ModelArtifact, Release, ReleaseArtifact, ReleaseTrack
from ota.services.keys import active_release_key, current_keylist, iso, root_public_key
from protocol.errors import ManifestError
from protocol.manifest import release_signed, sign_document, verify_keylist, verify_manifest


def artifact_url(artifact: ModelArtifact) -> str:
    """The stable URL named in the manifest; offers add a short-lived presigned URL next to it."""
    return f"{settings.PUBLIC_URL}/api/v1/artifacts/{artifact.pk}/download"


def _hardware(names: list[str]) -> list[HardwareModel]:
    if not names:
        raise OtaError(
            "validation_error", "Name at least one hardware model.", fields={"hardware_models": ["Required."]}
        )
    found = {hw.name: hw for hw in HardwareModel.objects.filter(name__in=names)}
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise OtaError(
            "unknown_hardware",
            f"Unknown hardware model(s): {', '.join(unknown)}.",
            fields={"hardware_models": [f"Unknown: {', '.join(unknown)}."]},
        )
    return [found[n] for n in dict.fromkeys(names)]


def _allocate_serial(name: str) -> int:
    """Next serial for a release on the track `name`: one sequence for the whole fleet.

    Serials increase per track, and across tracks too, because a device keeps one rollback floor
    (the highest serial it ever committed, protocol.verify_manifest): a device moved to another
    model must still accept it, and an old release of any model stays a rollback. Every track row
    is locked while the number is taken, so concurrent releases never share or reuse one.
    """
    try:
        with transaction.atomic():
            ReleaseTrack.objects.get_or_create(name=name)
    except IntegrityError:
        pass  # created concurrently: it exists now
    tracks = list(ReleaseTrack.objects.select_for_update().order_by("pk"))
    serial = max(t.last_serial for t in tracks) + 1
    track = next(t for t in tracks if t.name == name)
    track.last_serial = serial
    track.save(update_fields=["last_serial"])
    return serial


def _check_targets(artifact: ModelArtifact, names: set[str]) -> None:
    allowed = set(artifact.hardware_models.values_list("name", flat=True))
    if allowed and not names <= allowed:
        extra = sorted(names - allowed)
        raise OtaError(
            "incompatible_hardware",
            f"Artifact {artifact} does not target {', '.join(extra)}.",
            fields={"hardware_models": [f"Artifact targets only {', '.join(sorted(allowed))}."]},
        )


def builds_by_hardware(builds: list[ModelArtifact], hardware_models: list[str]) -> dict[str, ModelArtifact]:
    """release_create's `artifacts` from builds picked by artifact (the web form): each build serves
    the release's hardware models it targets. OtaError on `builds` for a build that targets none of
    them (or every hardware model: it would not say which) and for two builds of one hardware model."""
    out: dict[str, ModelArtifact] = {}
    for build in builds:
        named = set(build.hardware_models.values_list("name", flat=True))
        targets = sorted(named & set(hardware_models))
        if not named:
            raise OtaError(
                "validation_error",
                f"Build {build} names no hardware model: give it the hardware it is built for.",
                fields={"builds": [f"{build} names no hardware model."]},
            )
        if not targets:
            raise OtaError(
                "validation_error",
                f"Build {build} targets none of the release's hardware models ({', '.join(sorted(named))}).",
                fields={"builds": [f"{build} targets none of the release's hardware models."]},
            )
        for name in targets:
            if name in out:
                raise OtaError(
                    "validation_error",
                    f"Two builds for {name}: {out[name]} and {build}; pick one.",
                    fields={"builds": [f"Two builds for {name}."]},
                )
            out[name] = build
    return out


@transaction.atomic
def release_create(
    *,
    actor: Actor,
    artifact: ModelArtifact,
    hardware_models: list[str],
    artifacts: dict[str, ModelArtifact] | None = None,
    min_agent_version: str = "1.0",
    version: str = "",
    expires_days: int | None = None,
    notes: str = "",
    rollback_of: Deployment | None = None,
    now: dt.datetime | None = None,
) -> Release:
    """Sign a manifest for `artifact` with the active release key, under the track's next serial.

    `artifacts` ({hardware model name: artifact}) gives some hardware models a build of their own
    (fp32 for x86, int8 for low-power ARM): each is signed in its own manifest, with the same
    model, version and serial; `artifact` serves the other hardware models.
    """
    now = now or timezone.now()
    hardware = _hardware(hardware_models)
    artifacts = dict(artifacts or {})
    names = {hw.name for hw in hardware}
    stray = sorted(set(artifacts) - names)
    if stray:
        raise OtaError(
            "validation_error",
            f"Per-hardware artifacts must be for the release's hardware models: {', '.join(stray)}.",
            fields={"artifacts": [f"Not in hardware_models: {', '.join(stray)}."]},
        )
    main_hardware = [hw for hw in hardware if hw.name not in artifacts or artifacts[hw.name] == artifact]
    if not main_hardware:
        raise OtaError(
            "validation_error",
            "The release's artifact must serve at least one of its hardware models.",
            fields={"artifacts": ["Every hardware model has an artifact of its own: drop one."]},
        )
    _check_targets(artifact, {hw.name for hw in main_hardware})
    for name, build in artifacts.items():
        _check_targets(build, {name})
    days = expires_days if expires_days is not None else settings.OTA_RELEASE_EXPIRY_DAYS
    if not 1 <= days <= 3650:
        raise OtaError(
            "validation_error", "Expiry must be 1..3650 days.", fields={"expires_days": ["1..3650."]}
        )
    key_row, key = active_release_key()
    keylist_doc = current_keylist().document
    serial = _allocate_serial(artifact.name)
    expires_at = now + dt.timedelta(days=days)
    version = version or artifact.version

    def signed_for(build: ModelArtifact, targets: list[HardwareModel]) -> dict:
        try:
            signed = release_signed(
                model=artifact.name,  # one model and version for every build: quality telemetry names it
                version=version,
                serial=serial,
                artifact_url=artifact_url(build),
                sha256=build.sha256,
                size=build.size,
                hardware_models=[hw.name for hw in targets],
                min_agent_version=min_agent_version,
                created=iso(now),
                expires=iso(expires_at),
            )
            manifest = sign_document(signed, key=key)
            # Check it exactly as a device will, with the shared verifier, before anyone gets it.
            keylist = verify_keylist(
                keylist_doc, root_public_key=root_public_key(), current_version=None, now=now
            )
            verify_manifest(
                manifest,
                keylist=keylist,
                installed_serial=None,
                hardware_model=targets[0].name,
                agent_version=min_agent_version,
                now=now,
            )
        except ManifestError as exc:
            raise OtaError(exc.reason, f"Cannot sign this release: {exc.detail or exc.reason}.") from exc
        return manifest

    manifest = signed_for(artifact, main_hardware)
    release = Release.objects.create(
        track=ReleaseTrack.objects.get(name=artifact.name),
        artifact=artifact,
        serial=serial,
        version=manifest["signed"]["version"],
        min_agent_version=min_agent_version,
        manifest=manifest,
        signed_by=key_row,
        expires_at=expires_at.replace(microsecond=0),
        rollback_of=rollback_of,
        notes=notes,
    )
    release.hardware_models.set(hardware)
    by_name = {hw.name: hw for hw in hardware}
    ReleaseArtifact.objects.bulk_create(
        ReleaseArtifact(
            release=release,
            hardware_model=by_name[name],
            artifact=build,
            manifest=signed_for(build, [by_name[name]]),
        )
        for name, build in artifacts.items()
        if build != artifact
    )
    after = snapshot(release)
    after["artifacts"] = {name: build.pk for name, build in artifacts.items()}
    audit_record(actor=actor, action="release.create", instance=release, after=after)
    return release


def release_resign(
    *, actor: Actor, release: Release, rollback_of: Deployment, now: dt.datetime | None = None
) -> Release:
    """The same artifact again under a new, higher serial: how a fleet goes back to an older model."""
    return release_create(
        actor=actor,
        artifact=release.artifact,
        hardware_models=list(release.hardware_models.values_list("name", flat=True)),
        artifacts={
            b.hardware_model.name: b.artifact
            for b in release.artifacts.select_related("hardware_model", "artifact")
        },
        min_agent_version=release.min_agent_version,
        version=release.version,
        notes=f"rollback of deployment #{rollback_of.pk} to serial {release.serial}",
        rollback_of=rollback_of,
        now=now,
    )


def release_delete(*, actor: Actor, instance: Release) -> None:
    if instance.deployments.exists():
        raise OtaError("in_use", f"Release {instance} has deployments; it cannot be deleted.", status=409)
    model_delete(instance=instance, actor=actor)
