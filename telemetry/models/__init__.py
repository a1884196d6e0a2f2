"""Telemetry models, one module per concept; this file only gathers them for Django."""

from telemetry.models.commands import Command, CommandState
from telemetry.models.events import Alert, AlertRule, Event
from telemetry.models.ingest import DeadLetter, ProcessedMessage
from telemetry.models.media import Media
from telemetry.models.metrics import MetricRollup, MetricSample
from telemetry.models.policies import BandwidthPolicy, DataUsage, DeviceConfigState
from telemetry.models.quality import ModelQualityRollup, ModelQualitySample
from telemetry.models.status import DeviceStatus

__all__ = [
    "Alert",
    "AlertRule",
    "BandwidthPolicy",
    "Command",
    "CommandState",
    "DataUsage",
    "DeadLetter",
    "DeviceConfigState",
    "DeviceStatus",
    "Event",
    "Media",
    "MetricRollup",
    "MetricSample",
    "ModelQualityRollup",
    "ModelQualitySample",
    "ProcessedMessage",
]
