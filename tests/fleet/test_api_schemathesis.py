"""Fuzz every API operation from its own OpenAPI schema: no 5xx, responses match the schema."""

import os

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from accounts.models import Role
from accounts.services import token_create
from fleet.audit import Actor
from fleet.wsgi import application
from tests.factories import DeviceFactory, SavedFilterFactory

load_all_checks()
CHECKED = [
    CHECKS.get_one(name)
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
]


@pytest.fixture
def some_rows(db):
    DeviceFactory(device_id="cam-fuzz-1")
    SavedFilterFactory()


@pytest.fixture(autouse=True)
def keep_test_connection():
    """Calls go straight to the WSGI app, whose request signals would close the test transaction's
    connection; Django's test client disconnects the same handlers."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(make_user):
    return token_create(actor=Actor.system("fuzz"), user=make_user(Role.ADMIN), name="fuzz").key


# Generating the schema needs Django configured (pytest-django does it before collection), not the DB.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


# Derandomized, so CI runs the same cases every time; FUZZ_EXPLORE=1 draws new ones (run it now and then).
EXPLORE = os.environ.get("FUZZ_EXPLORE") == "1"


@schema.parametrize()
@settings(
    max_examples=40 if EXPLORE else 12,
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_operation_conforms_to_its_schema(case, some_rows, admin_token, settings_throttle_off):
    case.call_and_validate(headers={"Authorization": f"Token {admin_token}"}, checks=CHECKED)


@pytest.fixture
def settings_throttle_off(throttle_rates):
    throttle_rates(anon="1000000/min", user="1000000/min", enroll="1000000/min")
