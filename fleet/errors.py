"""The one domain error shape. Each app subclasses it; the API turns it into the JSON error body."""


class FleetError(Exception):
    """A refused request with a stable reason code, a message for people and optional field errors."""

    status = 400

    def __init__(self, code: str, message: str, *, fields: dict | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or {}
        if status is not None:
            self.status = status


class NotFound(FleetError):
    status = 404


class Conflict(FleetError):
    status = 409
