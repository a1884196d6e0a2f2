"""Users, roles and API tokens. Every write is audited."""

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, Role, User
from fleet.audit import Actor, audit_record, snapshot
from fleet.errors import FleetError
from fleet.models import AuditSource
from fleet.secret_keys import key_hash, key_new, key_revoke
from fleet.services import model_create, model_update

log = logging.getLogger(__name__)

TOKEN_PREFIX = "flt_"


class AccountError(FleetError):
    pass


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    key: str  # shown to the caller once, never stored


@transaction.atomic
def token_create(*, actor: Actor, user: User, name: str, expires_in_days: int | None = None) -> IssuedToken:
    """A new API token for `user`. Expiry defaults to settings.API_TOKEN_DEFAULT_DAYS; 0 means never."""
    days = settings.API_TOKEN_DEFAULT_DAYS if expires_in_days is None else expires_in_days
    if days < 0:
        raise AccountError("validation_error", "expires_in_days must be 0 or more.")
    new = key_new(TOKEN_PREFIX)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        expires_at=timezone.now() + timedelta(days=days) if days else None,
    )
    audit_record(actor=actor, action="api_token.create", instance=token, after=snapshot(token))
    return IssuedToken(token=token, key=new.key)


def token_obtain(
    *, username: str, password: str, name: str, expires_in_days: int | None = None, source: str = ""
) -> IssuedToken:
    """A new token for the user whose password this is: how scripts get their first token.

    AccountError("invalid_credentials", 401) for a wrong password, an unknown or inactive user,
    all alike, so the answer does not tell which usernames exist.
    """
    user = authenticate(username=username, password=password)
    if user is None:
        log.warning("token_obtain refused", extra={"username": username[:150], "source": source})
        raise AccountError("invalid_credentials", "Wrong username or password.", status=401)
    return token_create(
        actor=Actor(user=user, source=AuditSource.API), user=user, name=name, expires_in_days=expires_in_days
    )


@transaction.atomic
def token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    return key_revoke(actor=actor, record=token, action="api_token.revoke")


def token_authenticate(*, key: str) -> ApiToken:
    """The active token for `key`, or AccountError saying why not (unknown, revoked, expired)."""
    token = ApiToken.objects.select_related("user").filter(key_hash=key_hash(key)).first()
    if token is None:
        raise AccountError("invalid_token", "Invalid token.", status=401)
    if token.revoked_at is not None:
        raise AccountError("token_revoked", "Token has been revoked.", status=401)
    if token.expires_at is not None and token.expires_at <= timezone.now():
        raise AccountError("token_expired", "Token has expired.", status=401)
    if not token.user.is_active:
        raise AccountError("user_inactive", "User is inactive.", status=401)
    # Touch at most once a minute: a hot automation loop should not write on every call.
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


@transaction.atomic
def user_create(
    *, actor: Actor, username: str, role: str = Role.VIEWER, email: str = "", password: str | None = None
) -> User:
    if User.objects.filter(username=username).exists():
        raise AccountError(
            "duplicate", f"A user named '{username}' already exists.", fields={"username": ["Taken."]}
        )
    user = model_create(
        model=User,
        actor=actor,
        data={"username": username, "email": email, "role": role, "password": "!"},
        action="user.create",
    )
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save(update_fields=["password"])
    return user


def user_update(*, actor: Actor, instance: User, data: dict) -> User:
    if instance == actor.user and "role" in data and data["role"] != instance.role:
        raise AccountError("forbidden", "You cannot change your own role.", status=403)
    return model_update(instance=instance, actor=actor, data=data, action="user.update")


@transaction.atomic
def user_deactivate(*, actor: Actor, instance: User) -> None:
    """Users are deactivated, not deleted, so the audit log keeps pointing at them."""
    if instance == actor.user:
        raise AccountError("forbidden", "You cannot deactivate yourself.", status=403)
    before = snapshot(instance)
    instance.is_active = False
    instance.save(update_fields=["is_active"])
    ApiToken.objects.filter(user=instance, revoked_at__isnull=True).update(revoked_at=timezone.now())
    audit_record(
        actor=actor, action="user.deactivate", instance=instance, before=before, after=snapshot(instance)
    )


def admin_ensure(*, username: str = "admin") -> tuple[User, str | None]:
    """The demo's admin user; the password is returned only when the user is created (printed once)."""
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, None
    password = secrets.token_urlsafe(12)
    user = User.objects.create_superuser(username=username, email="", password=password, role=Role.ADMIN)
    audit_record(actor=Actor.system("demo"), action="user.create", instance=user, after=snapshot(user))
    return user, password


# -- web UI sign-in ----------------------------------------------------------------------------


def _login_keys(*, username: str, address: str) -> list[str]:
    return [f"login-fail:user:{username.lower()[:150]}", f"login-fail:addr:{address[:45]}"]


def login_allowed(*, username: str, address: str) -> bool:
    """False once LOGIN_FAILURES_MAX failures for this user name or this address fell within the window."""
    limit = settings.LOGIN_FAILURES_MAX
    return all((cache.get(key) or 0) < limit for key in _login_keys(username=username, address=address))


def login_failed(*, username: str, address: str) -> None:
    """Count a failed sign-in for the user name and the address (shared cache: every replica sees it)."""
    window = settings.LOGIN_FAILURES_WINDOW_S
    for key in _login_keys(username=username, address=address):
        if cache.add(key, 1, timeout=window):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window)
    audit_record(
        actor=Actor(user=None, source=AuditSource.UI, label=username[:150] or "anonymous"),
        action="user.login_failed",
        object_type="user",
        after={"username": username[:150], "address": address[:45]},
    )


def login_succeeded(*, username: str, address: str) -> None:
    cache.delete_many(_login_keys(username=username, address=address))


def user_password_change(*, actor: Actor, user: User, password: str) -> User:
    """Set a new password (validated by the caller's form); audited without the hash."""
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(actor=actor, action="user.password_change", instance=user)
    return user


def user_preference_set(*, actor: Actor, user: User, key: str, value: object) -> User:
    """Remember one UI choice for `user` (e.g. the cameras table's columns)."""
    user = User.objects.get(pk=user.pk)  # a request's user is a lazy proxy; write the row itself
    prefs = dict(user.preferences or {})
    if prefs.get(key) == value:
        return user
    prefs[key] = value
    return model_update(instance=user, actor=actor, data={"preferences": prefs}, action="user.preference")
