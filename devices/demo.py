"""A small demo fleet, written through the same services the API uses."""

from django.db import transaction

from devices import services
from devices.models import Site
from fleet.audit import Actor

SITES = [
    ("Berlin depot", "Europe/Berlin", 52.52, 13.40),
    ("Lisbon store", "Europe/Lisbon", 38.72, -9.14),
    ("Osaka street", "Asia/Tokyo", 34.69, 135.50),
]
HARDWARE = [("edgecam-arm64-npu", "arm64", "npu", 2048), ("edgecam-x86", "x86_64", "none", 4096)]
GROUPS = ["trucks", "storefronts", "street"]


@transaction.atomic
def demo_seed(*, devices_per_site: int = 4) -> bool:
    """Seed sites, hardware, groups and devices once; returns False when a fleet is already there."""
    if Site.objects.exists():
        return False
    actor = Actor.system("demo")
    sites = [
        services.site_create(actor=actor, data={"name": n, "timezone": tz, "latitude": lat, "longitude": lon})
        for n, tz, lat, lon in SITES
    ]
    hardware = [
        services.hardware_model_create(
            actor=actor, data={"name": n, "cpu_arch": arch, "accelerator": acc, "ram_mb": ram}
        )
        for n, arch, acc, ram in HARDWARE
    ]
    groups = [services.group_create(actor=actor, data={"name": n}) for n in GROUPS]
    for s, site in enumerate(sites):
        for i in range(devices_per_site):
            services.device_create(
                actor=actor,
                data={
                    "name": f"{site.name} cam {i + 1}",
                    "serial": f"DEMO-{s}{i:03d}",
                    "site": site,
                    "hardware_model": hardware[i % len(hardware)],
                    "groups": [groups[s]],
                    "tags": ["demo", "outdoor" if i % 2 else "indoor"],
                },
            )
    return True
