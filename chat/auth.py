"""Client secrets: short-lived, signed credentials for clients that cannot use the session.

`POST /api/chatkit/session` issues one for the logged-in user. It authorizes the API as
`Authorization: Bearer <secret>` and the WebSocket as a subprotocol: browsers cannot set headers
on a WebSocket, and a query string ends up in access logs, so the client offers
`["chat", "auth.<secret>"]` and the server selects `chat` (it never echoes the secret back).
A secret lives only as long as the browser session that minted it (a `ClientSecretGrant` row
names that session): it dies at its expiry, at that session's logout, and when the user's
password changes or the user is deactivated.
"""

import collections
import datetime
import functools
import time
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import connection
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from rest_framework import authentication, exceptions

from chat import dbthread, outage
from chat.models import ClientSecretGrant

PREFIX = "cs_"
SUBPROTOCOL = "chat"
AUTH_SUBPROTOCOL = "auth."
_SALT = "chat.client-secret"


def _signer() -> signing.TimestampSigner:
    # "." keeps the secret a valid subprotocol token (RFC 6455 forbids ":" there).
    return signing.TimestampSigner(salt=_SALT, sep=".")


def _password_mark(user: AbstractBaseUser) -> str:
    return user.get_session_auth_hash()[:16]


def secret_issue(*, user: AbstractBaseUser, session_key: str) -> tuple[str, int]:
    """A new client secret for the user, bound to the session that asks for it, and its expiry
    (epoch seconds). The user's lapsed grants are cleared on the way."""
    expires_at = int(time.time()) + settings.CLIENT_SECRET_TTL
    until = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
    ClientSecretGrant.objects.filter(user=user, expires_at__lt=timezone.now()).delete()
    grant = ClientSecretGrant.objects.create(user=user, session_key=session_key, expires_at=until)
    payload = {"u": user.pk, "p": _password_mark(user), "e": expires_at, "g": str(grant.pk)}
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
    try:
        grant = ClientSecretGrant.objects.filter(pk=payload.get("g"), user_id=payload.get("u"))
        session_key = grant.values_list("session_key", flat=True).first()
    except (ValidationError, ValueError, TypeError):
        return None
    if session_key is None:
        return None
    user = session_user(session_key)
    if user is None or user.pk != payload.get("u") or _password_mark(user) != payload.get("p"):
        return None
    return user


def session_user(session_key: str) -> AbstractBaseUser | None:
    """The active user a session still authenticates, or None (logged out, password changed,
    deactivated): Django's own check, made for a session key."""
    user = _user_of(_session_store(session_key))
    return user if user.is_authenticated else None


def _session_store(session_key: str | None) -> SessionBase:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def _user_of(session: SessionBase) -> AbstractBaseUser | AnonymousUser:
    """Django's own check of a session: its user, or anonymous (a session left from before a
    password change is flushed)."""
    return get_user(SimpleNamespace(session=session))


# Django's verdict on a session for a user, by everything it depends on: the session's data,
# the user's password (the session hash) and `is_active`; the expiry is in the query. A check
# whose inputs have not changed reuses it: one query, no session decoding, no HMAC.
_verdicts: collections.OrderedDict[tuple, bool] = collections.OrderedDict()
_VERDICTS_KEPT = 10_000
_DB_SESSIONS = "django.contrib.sessions.backends.db"


def session_holds(session_key: str, user_id: int) -> bool:
    """Whether the session still authenticates the user `user_id`, as `session_user` says;
    with database sessions one query (the session row and the user row together), and Django's
    own check only when either changed since this process last made it."""
    if settings.SESSION_ENGINE != _DB_SESSIONS:
        user = session_user(session_key)
        return user is not None and user.pk == user_id
    with connection.cursor() as cursor:
        cursor.execute(_session_and_user_sql(), [session_key, _now_for_db(), user_id])
        row = cursor.fetchone()
    if row is None or row[0] is None:  # no such user; the session gone or expired
        return False
    key = (session_key, user_id, *row)
    verdict = _verdicts.get(key)
    if verdict is None:  # Django's check, on the session data just read (no second read)
        store = _session_store(session_key)
        store._session_cache = store.decode(row[0])
        user = _user_of(store)
        verdict = user.is_authenticated and user.pk == user_id
        _verdicts[key] = verdict
        if len(_verdicts) > _VERDICTS_KEPT:
            _verdicts.popitem(last=False)
    return verdict


def _now_for_db() -> Any:
    return connection.ops.adapt_datetimefield_value(timezone.now())


@functools.cache
def _session_and_user_sql() -> str:
    users, sessions = get_user_model()._meta.db_table, Session._meta.db_table
    return (
        f"SELECT s.session_data, u.password, u.is_active FROM {users} u "
        f"LEFT JOIN {sessions} s ON s.session_key = %s AND s.expire_date > %s WHERE u.id = %s"
    )


class CredentialLost(Exception):
    """What opened a socket (a `Credential`) no longer holds: it ends with 4401."""


@dataclass(frozen=True)
class Credential:
    """What a socket or an event stream was opened with: a session, or a client secret. It
    must stay valid for as long as the socket lives: logout, a password change, deactivation
    or the secret's expiry ends it (checked when any process announces that the user's
    credentials changed, every SESSION_CHECK_SECONDS as the net, and before any reply
    starts: standing.py)."""

    user_id: int
    session_key: str = ""
    secret: str = ""

    def still_valid(self) -> bool:
        """Whether it still authenticates the same user (reads the database)."""
        if self.secret:
            user = secret_user(self.secret)
        elif self.session_key:
            return session_holds(self.session_key, self.user_id)
        else:
            return False
        return user is not None and user.pk == self.user_id

    async def holds(self) -> bool:
        """`still_valid`, off the event loop; an outage of the database is not a logout."""
        try:
            return await dbthread.off_loop(self.still_valid)()
        except Exception as exc:
            if not outage.is_transient(exc):
                raise
            return True


def credential_of_scope(scope: dict[str, Any]) -> Credential:
    """The credential a WebSocket was opened with."""
    user_id = scope["user"].pk
    secret = secret_from_subprotocols(scope.get("subprotocols", []))
    if secret is not None:
        return Credential(user_id, secret=secret)
    session = scope.get("session")
    return Credential(user_id, session_key=(session.session_key or "") if session else "")


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


def own_origin(origin: str | None, *, scheme: str, host: str) -> bool:
    """Whether `origin` is this site: the request's own scheme, host and port (the host one of
    ALLOWED_HOSTS), or one of CSRF_TRUSTED_ORIGINS. Not the host alone: another port or plain
    http is another origin, and may be another program."""
    if not origin or origin == "null":
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    return origin == f"{scheme}://{host}"


def _websocket_scheme(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str:
    """The page's scheme for a WebSocket: wss is https; behind a TLS proxy, the header that
    SECURE_PROXY_SSL_HEADER names says so, as it does for HTTP requests."""
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode()
        if headers.get(name, b"").decode("latin-1").split(",")[0].strip() == proxy[1]:
            return "https"
    return "https" if scope.get("scheme") == "wss" else "http"


def _same_origin(scope: dict[str, Any]) -> bool:
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    return own_origin(origin, scheme=_websocket_scheme(scope, headers), host=host)


class WebSocketAuth:
    """Who opens a WebSocket: a client secret offered as a subprotocol, else the session.

    The session path keeps the Origin check (cross-site WebSocket hijacking rides on cookies),
    and refuses any other origin. A secret cannot be ridden that way, so its path needs no
    Origin, and a bad secret never falls back to the cookie: the socket is anonymous and gets
    closed with 4401.

    One layer for all of it, where channels' `AuthMiddlewareStack` behind an Origin check was
    five: this frame and one copy of the scope are all a socket keeps of it while it stays
    open, not five frames, three copies of the scope and a wrapper around every frame sent
    (there to save a session, which a WebSocket never does). docs/performance.md, "Idle
    sockets: the pings, not the collector".
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        secret = secret_from_subprotocols(scope.get("subprotocols", []))
        if secret is not None:
            user = await dbthread.off_loop(secret_user)(secret) or AnonymousUser()
            return await self.inner(dict(scope, user=user), receive, send)
        # Decided in plain functions: this frame lives as long as the socket, so it keeps no
        # copy of the headers.
        if not _same_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        session, user = await dbthread.off_loop(_session_of)(scope)
        return await self.inner(dict(scope, session=session, user=user), receive, send)


def _session_of(scope: dict[str, Any]) -> tuple[SessionBase, AbstractBaseUser | AnonymousUser]:
    """The session a WebSocket's cookie names, and the user it authenticates: Django's own
    check, so a session left from before a password change is flushed and anonymous."""
    session_key = None
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            session_key = parse_cookie(value.decode("latin-1")).get(settings.SESSION_COOKIE_NAME)
            break
    session = _session_store(session_key)
    return session, _user_of(session)
