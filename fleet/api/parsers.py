"""The API's JSON parser: what no reader could agree on, or no column could store, is a 400 here."""

import re

from django.http import JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding

from protocol import jsonsafe

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
    """protocol.jsonsafe's rules for every body: no repeated keys, no NaN, at most 32 levels deep
    (DRF's parser answered a 100,000-deep body with a RecursionError, a 500), integers within
    +-(2**53 - 1), and only text a column can store."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        try:
            data = jsonsafe.loads(stream.read().decode(encoding))
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from None
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
