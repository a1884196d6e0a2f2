"""Every OTA write: keys, artifacts, releases, deployments, the rollout engine and device reports.

Split by concept; import from here (`ota.services.device_came_online`, ...).
"""

from ota.services.artifacts import artifact_create, artifact_delete, artifact_update
from ota.services.deployments import (
    deployment_abort,
    deployment_create,
    deployment_delete,
    deployment_pause,
    deployment_resume,
    deployment_rollback,
    deployment_start,
)
from ota.services.keys import keylist_publish, keys_init, keys_revoke, keys_rotate
from ota.services.releases import builds_by_hardware, release_create, release_delete, release_resign
from ota.services.reports import device_came_online, report_apply, reports_apply
from ota.services.rollout import deployment_step, tick

__all__ = [
    "artifact_create",
    "artifact_delete",
    "artifact_update",
    "builds_by_hardware",
    "deployment_abort",
    "deployment_create",
    "deployment_delete",
    "deployment_pause",
    "deployment_resume",
    "deployment_rollback",
    "deployment_start",
    "deployment_step",
    "device_came_online",
    "keylist_publish",
    "keys_init",
    "keys_revoke",
    "keys_rotate",
    "release_create",
    "release_delete",
    "release_resign",
    "report_apply",
    "reports_apply",
    "tick",
]
