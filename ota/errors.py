"""The OTA domain error: one type, a stable reason code, turned into the JSON error body by the API."""

from fleet.errors import FleetError


class OtaError(FleetError):
    pass
