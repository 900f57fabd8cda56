"""Who sends a plain async view's request (the streaming views and ChatKit's endpoint, which
DRF's authentication does not run for): a Bearer client secret, else the session with its CSRF
check, as DRF does it."""

from typing import Any

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware

from chat import auth, dbthread


def detail(text: str, status: int) -> JsonResponse:
    """The DRF-shaped answer of an authentication or lookup failure."""
    response = JsonResponse({"detail": text}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


async def authenticate(request: HttpRequest) -> tuple[Any, auth.Credential] | HttpResponse:
    """The user and what they proved themselves with: a Bearer client secret, else the
    session with its CSRF check (as DRF does). A stream is bound to that credential."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme:
        user = None
        if scheme.lower() == "bearer":
            user = await dbthread.off_loop(auth.secret_user)(secret.strip())
        if user is None:
            return detail("The client secret is invalid or expired.", 401)
        return user, auth.Credential(user.pk, secret=secret.strip())
    user = await request.auser()
    if not user.is_authenticated:
        return detail("Log in, or send Authorization: Bearer <client secret>.", 401)
    if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request):
        csrf = CsrfViewMiddleware(lambda r: None)
        if (rejected := csrf.process_view(request, None, (), {})) is not None:
            return rejected
    return user, auth.Credential(user.pk, session_key=request.session.session_key or "")


def same_origin(request: HttpRequest) -> bool:
    """A browser's own-origin request, told by the Origin header browsers always send on POST.

    Verifying Origin is a CSRF defence of its own (OWASP), and it lets a page's plain
    `fetch('/api/stream/message', {method: 'POST', body})` stream without a token. A request
    with no Origin (curl, scripts) or a foreign one still needs the CSRF token.
    """
    try:
        host = request.get_host()
    except DisallowedHost:
        return False
    return auth.own_origin(request.headers.get("Origin"), scheme=request.scheme, host=host)
