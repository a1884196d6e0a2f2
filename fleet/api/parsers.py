"""The API's JSON parser: text the database cannot store is a 400 here, not a 500 at the driver."""

import re

from django.http import JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# PostgreSQL text cannot hold NUL; UTF-8 cannot encode a lone surrogate ("\ud800" is valid JSON).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "Text may not contain NUL characters or unpaired UTF-16 surrogates."


def unstorable(value) -> bool:
    """True when a string anywhere in `value` (keys included) holds a character no column can store."""
    if isinstance(value, str):
        return UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(unstorable(v) for v in value)
    return False


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if unstorable(data):
            raise ParseError(MESSAGE)
        return data


class UnstorableQueryMiddleware:
    """Query parameters get the parser's check: a 400 in the API's error body before any view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/") and any(
            unstorable(key) or unstorable(values) for key, values in request.GET.lists()
        ):
            from fleet.api.errors import error_body  # errors imports DRF settings, which import this

            return JsonResponse(error_body("parse_error", MESSAGE), status=400)
        return self.get_response(request)
