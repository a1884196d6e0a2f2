"""The local backend's presigned URLs: GET an object, PUT a multipart part.

Only used with STORAGE_BACKEND=local; with S3 the store serves these URLs itself.
The token in `?t=` is the whole authorisation (a device has no session or API token
here), so every refusal is a 403 without detail about what was wrong beyond the code.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from fleet import storage
from fleet.api.errors import error_body
from fleet.storage.base import StorageError
from fleet.storage.local import LocalBackend, verify


def _error(exc: StorageError) -> JsonResponse:
    return JsonResponse(error_body(exc.code, exc.message), status=exc.status)


def _local() -> LocalBackend:
    backend = storage.backend()
    if not isinstance(backend, LocalBackend):
        raise StorageError("not_found", "Not found.", status=404)
    return backend


# One range, as a resuming download asks for it ("bytes=1048576-"); anything else gets the whole object.
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_CHUNK = 64 * 1024


def _chunks(stream: BinaryIO, length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            chunk = stream.read(min(_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        stream.close()


@require_GET
def object_get(request: HttpRequest, key: str) -> HttpResponse:
    """The object, or the byte range a resuming download asks for (206, as S3 answers it)."""
    try:
        backend = _local()
        claims = verify(request.GET.get("t", ""), "get")
        if claims.get("k") != key:
            raise StorageError("bad_signature", "The URL is not valid for this object.", status=403)
        stream = backend.open(key)
    except StorageError as exc:
        return _error(exc)
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    size = os.fstat(stream.fileno()).st_size
    match = _RANGE.fullmatch(request.headers.get("Range", "").strip())
    if match and (not match[2] or int(match[2]) >= int(match[1])):
        first = int(match[1])
        if first >= size:
            stream.close()
            response = JsonResponse(
                error_body("range_not_satisfiable", f"The object has {size} bytes."), status=416
            )
            response["Content-Range"] = f"bytes */{size}"
            return response
        last = min(int(match[2]) if match[2] else size - 1, size - 1)
        stream.seek(first)
        response = StreamingHttpResponse(
            _chunks(stream, last - first + 1), status=206, content_type=content_type
        )
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
        response["Content-Length"] = str(last - first + 1)
    else:
        response = FileResponse(stream, content_type=content_type)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, no-store"
    return response


@csrf_exempt  # authorised by the signed token, not a browser session
@require_http_methods(["PUT"])
def part_put(request: HttpRequest, upload_id: str, number: int) -> HttpResponse:
    try:
        backend = _local()
        claims = verify(request.GET.get("t", ""), "part")
        if claims.get("u") != upload_id or claims.get("n") != number:
            raise StorageError("bad_signature", "The URL is not valid for this part.", status=403)
        limit = int(claims["m"])
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > limit:
            raise StorageError("too_large", f"part is larger than {limit} bytes", status=413)
        # request.read() streams the body past DATA_UPLOAD_MAX_MEMORY_SIZE (request.body would not).
        etag = backend.write_part(upload_id=upload_id, number=number, stream=request, max_bytes=limit)
    except StorageError as exc:
        return _error(exc)
    response = HttpResponse(status=200)
    response["ETag"] = etag
    return response
