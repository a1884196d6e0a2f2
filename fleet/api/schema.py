"""OpenAPI post-processing: every operation documents the one JSON error body and its status codes."""

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "description": "Stable reason code, e.g. validation_error."},
                "message": {"type": "string", "description": "What went wrong, for people."},
                "fields": {
                    "type": "object",
                    "description": "Field name -> list of errors.",
                    "additionalProperties": True,
                },
            },
        }
    },
}
ERROR_STATUSES = {
    "400": "Invalid request: see error.fields.",
    "401": "Missing, invalid, expired or revoked credentials.",
    "403": "Your role does not allow this action.",
    "404": "Not found.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "409": "Conflicts with the current state.",
    "413": "Request body too large.",
    "415": "Unsupported media type.",
    "429": "Too many requests: slow down.",
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": ref}}}
                )
    return result
