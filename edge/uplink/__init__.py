"""The edge agent's uplink: durable priority queue, shaping, drain loop and media upload."""

from edge.uplink.classes import UPLINK_CLASSES
from edge.uplink.db import UplinkDB
from edge.uplink.drain import Drainer, Step
from edge.uplink.errors import UplinkError
from edge.uplink.media import MediaUploader, UploadGrant
from edge.uplink.queue import Item, UplinkQueue
from edge.uplink.shaping import BandwidthPolicy, Shaper, TokenBucket

__all__ = [
    "UPLINK_CLASSES",
    "BandwidthPolicy",
    "Drainer",
    "Item",
    "MediaUploader",
    "Shaper",
    "Step",
    "TokenBucket",
    "UplinkDB",
    "UplinkError",
    "UplinkQueue",
    "UploadGrant",
]
