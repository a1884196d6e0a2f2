"""Model artifacts: an ONNX file checked on upload, stored in the object store, immutable afterwards."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import transaction

from devices.models import HardwareModel
from fleet import storage
from fleet.audit import Actor, audit_record, snapshot
from fleet.services import model_delete, model_update, validation_error
from ota.errors import OtaError
from ota.models import ModelArtifact


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)  # object-store keys allow [A-Za-z0-9._-] segments


@dataclass(frozen=True)
class OnnxInfo:
    input_shape: list[int | None]
    labels: list[str]


def _dim(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None  # symbolic / unknown dims are None


def onnx_inspect(data: bytes) -> OnnxInfo:
    """Check the bytes are a valid ONNX model that ONNX Runtime can load; its first input's shape."""
    import onnx
    import onnxruntime

    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ... for junk
        raise OtaError(
            "invalid_model",
            f"Not a valid ONNX model: {str(exc)[:300]}",
            fields={"file": ["Invalid ONNX model."]},
        ) from exc
    try:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OtaError(
            "invalid_model",
            f"ONNX Runtime cannot load the model: {str(exc)[:300]}",
            fields={"file": ["Does not load in ONNX Runtime."]},
        ) from exc
    inputs = session.get_inputs()
    shape = [_dim(d) for d in inputs[0].shape] if inputs else []
    meta = {p.key: p.value for p in model.metadata_props}
    return OnnxInfo(input_shape=shape, labels=_labels(meta.get("labels", "")))


def _labels(text: str) -> list[str]:
    """The `labels` metadata: a JSON list (what the edge detector reads, models/build.py writes)
    or, as many exporters write it, comma-separated names."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
        return [x.strip() for x in parsed if x.strip()]
    return [s.strip() for s in text.split(",") if s.strip()]


@transaction.atomic
def artifact_create(
    *,
    actor: Actor,
    name: str,
    version: str,
    file: IO[bytes],
    hardware_models: list[HardwareModel],
    labels: list[str] | None = None,
    notes: str = "",
) -> ModelArtifact:
    """Validate an uploaded model, put it in the object store and record it (sha256 and size as stored)."""
    if ModelArtifact.objects.filter(name=name, version=version).exists():
        raise OtaError(
            "duplicate",
            f"Artifact {name}@{version} exists already.",
            fields={"version": ["Taken."]},
            status=409,
        )
    file.seek(0)
    info = onnx_inspect(file.read())
    file.seek(0)
    artifact = ModelArtifact(
        name=name,
        version=version,
        storage_key=f"ota/artifacts/{_safe(name)}/{_safe(version)}-{uuid.uuid4().hex[:8]}.onnx",
        sha256="0" * 64,
        size=1,
        input_shape=info.input_shape,
        labels=labels if labels else info.labels,
        notes=notes,
    )
    try:
        artifact.full_clean()
    except ValidationError as exc:
        raise validation_error(exc) from exc
    artifact.size, artifact.sha256 = storage.put(artifact.storage_key, file)
    try:  # the bytes are stored before the row: remove them again if the row cannot be written
        artifact.save()
        artifact.hardware_models.set(hardware_models)
    except Exception:
        storage.delete(artifact.storage_key)
        raise
    audit_record(actor=actor, action="modelartifact.create", instance=artifact, after=snapshot(artifact))
    return artifact


def artifact_update(*, actor: Actor, instance: ModelArtifact, data: dict) -> ModelArtifact:
    """Only the description may change: the bytes and what they are stay fixed (releases sign them)."""
    allowed = {"notes", "labels", "hardware_models"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise OtaError(
            "immutable", f"An artifact's {', '.join(unknown)} cannot change; upload a new version."
        )
    return model_update(instance=instance, actor=actor, data=data)


def artifact_delete(*, actor: Actor, instance: ModelArtifact) -> None:
    """Refused while a release uses the artifact; the stored bytes go once the row is gone."""
    count = instance.releases.count()
    if count:
        raise OtaError(
            "in_use", f"Artifact {instance} is used by {count} release(s); it cannot be deleted.", status=409
        )
    key = instance.storage_key
    with transaction.atomic():
        model_delete(instance=instance, actor=actor)
        transaction.on_commit(lambda: storage.delete(key))
