from rest_framework import authentication, exceptions

from accounts.services import AccountError, token_authenticate


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>` against hashed, expiring, revocable per-user tokens."""

    keyword = "Token"

    def authenticate_credentials(self, key):
        try:
            token = token_authenticate(key=key)
        except AccountError as exc:
            raise exceptions.AuthenticationFailed(exc.message, code=exc.code) from exc
        return token.user, token
