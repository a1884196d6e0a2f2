"""OTA: model artifacts, signing keys and key lists, releases, deployments and per-device updates."""

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from devices.models import Device, HardwareModel, name_validator
from protocol.vocab import OTA_STATES, OTA_TERMINAL_STATES

model_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]{0,99}$", "Model names are lowercase: a-z 0-9 . _ - (e.g. person-det)."
)
version_validator = RegexValidator(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$", "Not a valid version string.")
hhmm_validator = RegexValidator(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "Use HH:MM (24 h).")


class ModelArtifact(models.Model):
    """An ONNX model file in the object store; the bytes never change once uploaded."""

    name = models.CharField(max_length=100, validators=[model_name_validator])
    version = models.CharField(max_length=64, validators=[version_validator])
    storage_key = models.CharField(max_length=300, unique=True)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    input_shape = models.JSONField(default=list, blank=True)  # e.g. [1, 3, 320, 320]; None for dynamic dims
    labels = models.JSONField(default=list, blank=True)
    hardware_models = models.ManyToManyField(HardwareModel, blank=True, related_name="artifacts")
    notes = models.TextField(blank=True, max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="ota_artifact_name_version")]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class KeyRole(models.TextChoices):
    ROOT = "root"
    RELEASE = "release"


class SigningKey(models.Model):
    """An Ed25519 key. Root: public half only (the private key stays offline with the operator).

    Release: the private key is kept encrypted at rest (PKCS#8 PEM, passphrase from OTA_KEY_PASSPHRASE).
    """

    keyid = models.CharField(max_length=64, unique=True)
    role = models.CharField(max_length=8, choices=KeyRole.choices)
    public_key = models.CharField(max_length=64)  # base64 raw 32 bytes
    encrypted_private_key = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    audit_exclude = ("encrypted_private_key",)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.role} {self.keyid[:12]}"


class KeyListDocument(models.Model):
    """A root-signed key list, exactly as devices receive it. The highest version is current."""

    version = models.PositiveIntegerField(unique=True)
    document = models.JSONField()
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-version",)

    def __str__(self) -> str:
        return f"key list v{self.version}"


class ReleaseTrack(models.Model):
    """One row per model name; the rows are locked while a (fleet-wide) serial is allocated."""

    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    last_serial = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class Release(models.Model):
    """A signed manifest for one artifact. `manifest` is the signed document devices verify."""

    track = models.ForeignKey(ReleaseTrack, on_delete=models.PROTECT, related_name="releases")
    artifact = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="releases")
    serial = models.PositiveBigIntegerField()
    version = models.CharField(max_length=64)
    hardware_models = models.ManyToManyField(HardwareModel, related_name="releases")
    min_agent_version = models.CharField(max_length=64, default="1.0")
    manifest = models.JSONField()
    signed_by = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="releases")
    expires_at = models.DateTimeField()
    # Set on a re-signed older artifact shipped to undo a deployment (a fleet "rollback").
    rollback_of = models.ForeignKey(
        "Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollback_releases"
    )
    notes = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        constraints = [models.UniqueConstraint(fields=["track", "serial"], name="ota_release_track_serial")]

    def __str__(self) -> str:
        return f"{self.track.name}@{self.version} #{self.serial}"


class ReleaseArtifact(models.Model):
    """A release's own build for one hardware model (int8 for a low-power ARM camera, say), signed
    in a manifest of its own: same model, version and serial, this artifact's URL, size and sha256,
    only this hardware model. Cameras of other hardware get the release's main manifest."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="artifacts")
    hardware_model = models.ForeignKey(HardwareModel, on_delete=models.PROTECT, related_name="+")
    artifact = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="release_builds")
    manifest = models.JSONField()

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(
                fields=["release", "hardware_model"], name="ota_release_artifact_hardware"
            )
        ]

    def __str__(self) -> str:
        return f"{self.release} for {self.hardware_model_id}: {self.artifact}"


class DeploymentState(models.TextChoices):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


# A device belongs to at most one deployment in these states.
ACTIVE_DEPLOYMENT_STATES = (DeploymentState.SCHEDULED, DeploymentState.RUNNING, DeploymentState.PAUSED)
FINAL_DEPLOYMENT_STATES = (DeploymentState.COMPLETED, DeploymentState.ABORTED, DeploymentState.ROLLED_BACK)

ratio = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class Deployment(models.Model):
    """A release + the devices it goes to + how (canaries, waves, limits, thresholds, window)."""

    name = models.CharField(max_length=100, validators=[name_validator])
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="deployments")
    state = models.CharField(
        max_length=16, choices=DeploymentState.choices, default=DeploymentState.DRAFT, db_index=True
    )
    # Target selectors as given: {"devices": [device_id], "groups": [id], "tags": [name], "sites": [id],
    # "hardware_models": [id], "saved_filters": [id]}; resolved once, into DeviceUpdate rows.
    targets = models.JSONField(default=dict)
    excluded = models.JSONField(default=list, blank=True)  # [{"device": id, "reason": code}]
    plan = models.JSONField(default=list, blank=True)  # [{"wave": n, "label": "canary"|"wave n", "size": k}]
    # Strategy.
    canary_devices = models.JSONField(default=list, blank=True)  # device ids updated first
    canary_count = models.PositiveIntegerField(default=0)  # or: this many devices picked first
    waves = models.JSONField(default=list, blank=True)  # cumulative percentages after the canaries
    soak_s = models.PositiveIntegerField(default=0)
    max_concurrent = models.PositiveIntegerField(null=True, blank=True)
    max_per_minute = models.PositiveIntegerField(null=True, blank=True)
    pause_failure_rate = models.FloatField(null=True, blank=True, validators=ratio)
    abort_failure_rate = models.FloatField(null=True, blank=True, validators=ratio)
    min_finished = models.PositiveIntegerField(default=1)  # thresholds apply from this many finished
    device_timeout_s = models.PositiveIntegerField(default=3600, validators=[MinValueValidator(1)])
    window_start = models.CharField(max_length=5, blank=True, validators=[hhmm_validator])
    window_end = models.CharField(max_length=5, blank=True, validators=[hhmm_validator])
    auto_rollback = models.BooleanField(default=False)
    # Quality gates (ota.gates.GATE_SETTINGS): thresholds a wave's cameras must meet against a
    # control cohort on the old model before the next wave starts; {}: none.
    gates = models.JSONField(default=dict, blank=True)
    # Shadow evaluation: {"share": 0..1, "cpu_budget_pct": 0..100, "soak_s": s}; {}: none. Each
    # wave's cameras first run the release beside their model; it is activated once the gate passes.
    shadow = models.JSONField(default=dict, blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # Progress of the engine.
    current_wave = models.IntegerField(default=-1)  # -1: not started
    wave_count = models.PositiveIntegerField(default=0)
    wave_started_at = models.DateTimeField(null=True, blank=True)
    wave_done_at = models.DateTimeField(null=True, blank=True)  # soak runs from here
    state_reason = models.CharField(max_length=500, blank=True)
    # Failures the operator accepted by resuming; only failures beyond these pause again.
    failures_acknowledged = models.PositiveIntegerField(default=0)
    # One entry per wave whose gate was evaluated (ota.services.gates): state, cohorts, numbers.
    gate_results = models.JSONField(default=list, blank=True)
    shadow_activated_wave = models.IntegerField(default=-1)  # waves up to this one were told to switch
    rollback_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def deployment_id(self) -> str:
        """The id on the wire (down/ota, up/ota)."""
        return f"dep-{self.pk}"


OtaState = models.TextChoices("OtaState", [(s.upper(), s) for s in OTA_STATES])
TERMINAL = tuple(sorted(OTA_TERMINAL_STATES))
FAILED_STATES = ("failed", "rolled_back", "timed_out")


class DeviceUpdate(models.Model):
    """One device in one deployment: where it is (OTA_STATES) and why."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="updates")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="ota_updates")
    wave = models.IntegerField(default=0)  # 0: canaries (when any), then 1..n
    state = models.CharField(max_length=16, choices=OtaState.choices, default="pending")
    reason = models.CharField(max_length=300, blank=True)
    progress = models.FloatField(null=True, blank=True)
    # Held while the deployment is active; a partial unique index makes "one active deployment
    # per device" hold even under concurrent starts.
    active = models.BooleanField(default=False)
    # The release this device ran before (the target of a fleet rollback).
    from_release = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    notified_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)  # the device timeout counts from here
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=["deployment", "device"], name="ota_update_deployment_device"),
            models.UniqueConstraint(
                fields=["device"], condition=Q(active=True), name="ota_one_active_per_device"
            ),
        ]
        indexes = [models.Index(fields=["deployment", "wave", "state"])]

    def __str__(self) -> str:
        return f"{self.device_id} in #{self.deployment_id}: {self.state}"
