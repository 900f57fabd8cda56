"""Client secrets: short-lived, signed credentials for clients that cannot use the session.

`POST /api/chatkit/session` issues one for the logged-in user. It authorizes the API as
`Authorization: Bearer <secret>` and the WebSocket as a subprotocol: browsers cannot set headers
on a WebSocket, and a query string ends up in access logs, so the client offers
`["chat", "auth.<secret>"]` and the server selects `chat` (it never echoes the secret back).
A secret dies at its expiry, or at once when the user's password changes.
"""

import time
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing
from rest_framework import authentication, exceptions

PREFIX = "cs_"
SUBPROTOCOL = "chat"
AUTH_SUBPROTOCOL = "auth."
_SALT = "chat.client-secret"


def _signer() -> signing.TimestampSigner:
    # "." keeps the secret a valid subprotocol token (RFC 6455 forbids ":" there).
    return signing.TimestampSigner(salt=_SALT, sep=".")


def _password_mark(user: AbstractBaseUser) -> str:
    return user.get_session_auth_hash()[:16]


def secret_issue(*, user: AbstractBaseUser) -> tuple[str, int]:
    """A new client secret for the user and its expiry (epoch seconds)."""
    expires_at = int(time.time()) + settings.CLIENT_SECRET_TTL
    payload = {"u": user.pk, "p": _password_mark(user), "e": expires_at}
    return PREFIX + _signer().sign_object(payload), expires_at


def secret_user(secret: str) -> AbstractBaseUser | None:
    """The user a valid, unexpired secret was issued to; None for anything else."""
    if not secret.startswith(PREFIX):
        return None
    try:
        payload = _signer().unsign_object(secret[len(PREFIX) :])
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or payload.get("e", 0) < time.time():
        return None
    user = get_user_model().objects.filter(pk=payload.get("u"), is_active=True).first()
    if user is None or _password_mark(user) != payload.get("p"):
        return None
    return user


class ClientSecretAuthentication(authentication.BaseAuthentication):
    """DRF: `Authorization: Bearer <client secret>`; a bad secret is a 401, never a fallback."""

    def authenticate(self, request) -> tuple[AbstractBaseUser, str] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Bearer <client secret>.")
        secret = parts[1].decode("latin-1")
        user = secret_user(secret)
        if user is None:
            raise exceptions.AuthenticationFailed("The client secret is invalid or expired.")
        return user, secret

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def secret_from_subprotocols(subprotocols: list[str]) -> str | None:
    """The client secret offered as an `auth.<secret>` subprotocol, if any."""
    for offered in subprotocols:
        if offered.startswith(AUTH_SUBPROTOCOL):
            return offered[len(AUTH_SUBPROTOCOL) :]
    return None


class WebSocketAuth:
    """Who opens a WebSocket: a client secret offered as a subprotocol, else the session.

    The session path keeps the Origin check (cross-site WebSocket hijacking rides on cookies).
    A secret cannot be ridden that way, so its path needs no Origin, and a bad secret never
    falls back to the cookie: the socket is anonymous and gets closed with 4401.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_path = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope, receive, send):
        secret = secret_from_subprotocols(scope.get("subprotocols", []))
        if secret is None:
            return await self.session_path(scope, receive, send)
        user = await database_sync_to_async(secret_user)(secret) or AnonymousUser()
        return await self.inner(dict(scope, user=user), receive, send)
