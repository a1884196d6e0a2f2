"""Which bandwidth policy applies to a device, and the DeviceConfig it turns into.

Precedence: the device's own policy > a policy of one of its groups > the fleet default
(the policy with neither device nor group) > protocol defaults. A device in several
groups with policies gets the one with the highest `priority`; equal priorities go to
the oldest policy (lowest id), so the choice never depends on query order.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from devices.models import Device
from protocol.down import BandwidthPolicy as BandwidthSettings
from protocol.down import DetectionSettings, DeviceConfig
from telemetry.models.policies import BandwidthPolicy


class PolicyIndex:
    """Every policy loaded once, so resolving thousands of devices costs no query per device."""

    def __init__(self, policies: Iterable[BandwidthPolicy] | None = None) -> None:
        policies = list(BandwidthPolicy.objects.all() if policies is None else policies)
        self.by_device = {p.device_id: p for p in policies if p.device_id}
        self.by_group = {p.group_id: p for p in policies if p.group_id}
        self.default = next((p for p in policies if not p.device_id and not p.group_id), None)

    def resolve(self, device: Device) -> BandwidthPolicy | None:
        """`device.groups` should be prefetched."""
        own = self.by_device.get(device.pk)
        if own is not None:
            return own
        candidates = [self.by_group[g.pk] for g in device.groups.all() if g.pk in self.by_group]
        if candidates:
            return min(candidates, key=lambda p: (-p.priority, p.pk))
        return self.default


def policy_for(device: Device) -> BandwidthPolicy | None:
    return PolicyIndex().resolve(device)


def device_config(policy: BandwidthPolicy | None) -> DeviceConfig:
    """The down/config body for a device under `policy` (protocol defaults without one)."""
    if policy is None:
        return DeviceConfig()
    quiet = None
    if policy.quiet_start is not None and policy.quiet_end is not None:
        quiet = (policy.quiet_start.strftime("%H:%M"), policy.quiet_end.strftime("%H:%M"))
    return DeviceConfig(
        detection=msgspec.convert(policy.detection or {}, DetectionSettings),
        bandwidth=BandwidthSettings(
            max_kbps=policy.max_kbps,
            daily_budget_mb=policy.daily_budget_mb,
            classes_allowed=list(policy.classes_allowed),
            class_priority=list(policy.class_priority),
            quiet_hours=quiet,
            metered=policy.metered,
        ),
    )
