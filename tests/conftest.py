"""Shared fixtures: users by role, API clients, and (from tests/fixtures) real brokers and S3."""

import pytest

# Django-dependent imports stay inside fixtures, so pure-Python suites (protocol/, edge/) also run
# with `-p no:django`.

pytest_plugins = ["tests.fixtures.mqtt", "tests.fixtures.brokers", "tests.fixtures.s3"]


@pytest.fixture
def make_user(db):
    from tests.factories import UserFactory

    def make(role: str = "viewer", **kwargs):
        return UserFactory(role=role, **kwargs)

    return make


@pytest.fixture
def api_client_for(make_user):
    """An API client authenticated by a real API token of a new user with `role`."""
    from rest_framework.test import APIClient

    from accounts.services import token_create
    from fleet.audit import Actor

    def make(role: str = "operator") -> APIClient:
        user = make_user(role)
        issued = token_create(actor=Actor.system("test"), user=user, name="test")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
        client.user = user
        return client

    return make


@pytest.fixture
def operator_client(api_client_for):
    return api_client_for("operator")


@pytest.fixture
def admin_client_api(api_client_for):
    return api_client_for("admin")


@pytest.fixture
def actor(make_user):
    from fleet.audit import Actor

    return Actor(user=make_user("operator"), source="api")


@pytest.fixture
def throttle_rates(monkeypatch):
    """Set DRF throttle rates for one test (DRF reads them once at import, so settings overrides do not reach it)."""
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    def set_rates(**rates: str) -> None:
        cache.clear()
        monkeypatch.setattr(
            SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **rates}
        )

    yield set_rates
    cache.clear()


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("django"):
        return
    from django.conf import settings

    # PBKDF2 at production strength costs ~0.3 s per user; tests make hundreds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
