import json

import pytest

from tests.api_base import assert_error_body

pytestmark = pytest.mark.django_db


def test_oversize_body_is_a_413(operator_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = operator_client.post("/api/v1/sites/", {"name": "x" * 5000}, format="json")
    assert_error_body(response, 413, "too_large")


def test_unsupported_media_type_is_a_415(operator_client):
    response = operator_client.post(
        "/api/v1/sites/", "name=x", content_type="application/x-www-form-urlencoded"
    )
    assert_error_body(response, 415)


def test_method_not_allowed_is_a_405(operator_client):
    assert_error_body(operator_client.put("/api/v1/devices/bulk/tag/", {}, format="json"), 405)


def test_unknown_api_path_is_a_json_404(operator_client):
    response = operator_client.get("/api/v1/nothing-here/")
    assert response.status_code == 404


def test_huge_id_in_path_and_filter_is_not_a_500(operator_client):
    assert operator_client.get(f"/api/v1/sites/{2**70}/").status_code == 404
    assert_error_body(operator_client.get("/api/v1/devices/", {"site": 2**70}), 400)


def test_throttled_requests_get_a_429(operator_client, throttle_rates):
    throttle_rates(user="2/min")
    statuses = [operator_client.get("/api/v1/sites/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    error = assert_error_body(operator_client.get("/api/v1/sites/"), 429, "throttled")
    assert "available in" in error["message"]


def test_time_offsets_postgresql_cannot_store_are_normalised(operator_client):
    response = operator_client.get("/api/v1/audit/", {"after": "0369-04-12T15:25:43+18:17"})
    assert response.status_code == 200, response.content
    assert_error_body(operator_client.get("/api/v1/audit/", {"after": "0001-01-01T00:00:00+01:00"}), 400)


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"], ids=["nul", "lone-surrogate"])
def test_text_no_column_can_store_is_a_400_in_body_and_query(operator_client, text):
    """PostgreSQL refuses NUL and UTF-8 cannot encode a lone surrogate: both valid JSON (found by schemathesis)."""
    for url, data in (
        ("/api/v1/sites/", {"name": text}),
        ("/api/v1/enroll/", {"token": "t", "serial": text}),
    ):
        body = json.dumps(data)  # ASCII with \u escapes, as a client would send it
        r = operator_client.generic("POST", url, body, content_type="application/json")
        assert "NUL" in assert_error_body(r, 400, "parse_error")["message"]
    assert_error_body(
        operator_client.get("/api/v1/data-usage/summary/", {"device": "a\x00"}), 400, "parse_error"
    )


# -- bodies no two readers would agree on (issue 12) ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper"),  # was a RecursionError: 500
        ('{"name": ' + "[" * 40 + "]" * 40 + "}", "nests deeper"),
        ('{"name": "a", "name": "b"}', "repeats the key 'name'"),
        ('{"name": NaN}', "NaN is not JSON"),
        ('{"name": 1180591620717411303424}', "safe integer range"),
    ],
    ids=["nested-100000", "nested-40", "repeated-key", "nan", "huge-int"],
)
def test_bodies_with_ambiguous_or_unbounded_json_are_a_400(operator_client, body, says):
    for url in ("/api/v1/sites/", "/api/v1/enroll/", "/api/v1/auth/token/"):
        response = operator_client.generic("POST", url, body, content_type="application/json")
        if url == "/api/v1/enroll/" and len(body) > 32 * 1024:
            assert_error_body(response, 413, "too_large")  # enrollment caps the body first
            continue
        assert says in assert_error_body(response, 400, "parse_error")["message"], url


def test_a_body_that_is_not_utf8_is_a_400(operator_client):
    response = operator_client.generic(
        "POST", "/api/v1/sites/", b'{"name": "\xff"}', content_type="application/json"
    )
    assert_error_body(response, 400, "parse_error")


def test_the_api_parser_only_raises_parse_errors_on_arbitrary_bytes():
    import contextlib
    import io

    from hypothesis import given, settings
    from hypothesis import strategies as st
    from rest_framework.exceptions import ParseError

    from fleet.api.parsers import StrictJSONParser

    fragments = st.sampled_from(
        [b"{", b"}", b"[", b"]", b'"a"', b":", b",", b"1e999", b"NaN", b"\\u0000", b"\xff", b" "]
    )

    @settings(max_examples=400, deadline=None)
    @given(st.lists(fragments | st.binary(max_size=8), max_size=40))
    def parse_anything(parts):
        with contextlib.suppress(ParseError):
            StrictJSONParser().parse(io.BytesIO(b"".join(parts)))

    parse_anything()
